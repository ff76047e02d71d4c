package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/money"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/protobuf/types/known/timestamppb"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

func staticFiles() http.Handler {
	sub, _ := fs.Sub(staticFS, "static") // the directory is embedded: cannot fail
	return http.FileServerFS(sub)
}

// templates holds one template set per page, each the page's template
// with the shared layout and partials.
type templates struct {
	pages map[string]*template.Template
}

// pageNames are the templates/*.html files that are whole pages; the
// others (layout, partials) are shared by every page.
var pageNames = []string{"login", "error", "orders", "order", "operations", "audit"}

func parseTemplates() (*templates, error) {
	shared := []string{"templates/layout.html", "templates/partials.html"}
	t := &templates{pages: map[string]*template.Template{}}
	for _, name := range pageNames {
		p, err := template.New(name).Funcs(funcs).ParseFS(templateFS, append(shared, "templates/"+name+".html")...)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		t.pages[name] = p
	}
	return t, nil
}

// view is what every page template gets.
type view struct {
	Title string
	// Nav names the active navigation entry.
	Nav     string
	User    *user
	CSRF    string
	Flash   *flash
	TraceUI string
	Data    any
}

// flash is a message at the top of a page.
type flash struct {
	Error bool
	Text  string
}

func flashError(text string) *flash {
	if text == "" {
		return nil
	}
	return &flash{Error: true, Text: text}
}

// render writes a whole page. It renders into a buffer first so that a
// template error becomes a 500 rather than half a page.
func (c *Console) render(w http.ResponseWriter, code int, page string, v *view) {
	c.write(w, code, page, "layout", v)
}

// fragment writes one named template of a page, for the script's live
// updates.
func (c *Console) fragment(w http.ResponseWriter, page, name string, v *view) {
	c.write(w, http.StatusOK, page, name, v)
}

func (c *Console) write(w http.ResponseWriter, code int, page, name string, v *view) {
	b, err := c.execute(page, name, v)
	if err != nil {
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// execute renders one named template of a page. A failure is a bug in the
// templates; it is logged here.
func (c *Console) execute(page, name string, v *view) ([]byte, error) {
	var buf bytes.Buffer
	if err := c.pages.pages[page].ExecuteTemplate(&buf, name, v); err != nil {
		c.log.Error("console: rendering", "page", page, "template", name, "err", err)
		return nil, err
	}
	return buf.Bytes(), nil
}

// view fills the parts of a view every signed-in page has.
func (s *session) view(title, nav string, data any) *view {
	return &view{Title: title, Nav: nav, User: &s.user, CSRF: s.csrf, Data: data}
}

var funcs = template.FuncMap{
	"money": money.Format,
	"time":  formatTime,
	"isoTime": func(ts *timestamppb.Timestamp) string {
		return ts.AsTime().UTC().Format(time.RFC3339Nano)
	},
	"status": statusName,
	"statusClass": func(st ordersv1.OrderStatus) string {
		return "status-" + strings.ReplaceAll(statusName(st), " ", "-")
	},
	"short": func(s string, n int) string {
		if len(s) <= n {
			return s
		}
		return s[:n] + "…"
	},
	"escapePath": url.PathEscape,
	// maxText is the longest free text a command takes (a reason, a
	// carrier): a form's maxlength, so that the browser takes what the
	// service does.
	"maxText": func() int { return order.MaxTextLen },
}

// formatTime shows a timestamp in UTC to the second; the zero value is
// shown as a dash.
func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "–"
	}
	return ts.AsTime().UTC().Format("2006-01-02 15:04:05Z")
}

// statusName is a status as people say it: "payment declined".
func statusName(st ordersv1.OrderStatus) string {
	s, ok := strings.CutPrefix(st.String(), "ORDER_STATUS_")
	if !ok || st == ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED {
		return "unknown"
	}
	return strings.ToLower(strings.ReplaceAll(s, "_", " "))
}

var traceID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// traceLink is the tracing UI's page of a trace, or "" when no UI is
// configured or the id is not a W3C trace id.
func traceLink(base, id string) string {
	if base == "" || !traceID.MatchString(id) {
		return ""
	}
	if strings.Contains(base, "{trace_id}") {
		return strings.ReplaceAll(base, "{trace_id}", id)
	}
	return strings.TrimSuffix(base, "/") + "/trace/" + id
}

// sinceText says how long ago t was, coarsely, for lag figures.
func sinceText(d time.Duration) string {
	if d < time.Second {
		return "under a second"
	}
	return d.Round(time.Second).String()
}
