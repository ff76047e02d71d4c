// Package erasure_test forgets a customer on a whole ordersd (embedded
// NATS, real SQLite, real gRPC) and then reads every file under DATA_DIR:
// no plain text of the customer's personal fields and no copy of their data
// key (wrapped or unwrapped) may remain, while the hash chains verify,
// other customers are untouched, the forgotten customer's orders show
// erased markers before and after a rebuild, and a new order of the same
// customer gets a new key.
package erasure_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/keys"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/pii"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "modernc.org/sqlite" // the read model's driver, to checkpoint it
)

// Personal fields of the customer to forget, and of one to keep: each
// string is unique enough to be found by a scan of the data directory.
var (
	forgetAddr = &ordersv1.Address{Name: "Ada Forgetmenot", Line1: "17 Forgetmenot Lane", Line2: "Flat Zq9",
		City: "Forgettown", Region: "Oblivia", PostalCode: "FG9 7QZ", Country: "GB"}
	forgetAddr2    = &ordersv1.Address{Name: "Ada Forgetmenot", Line1: "2 Secondforget Road", City: "Forgettown", Country: "GB"}
	forgetTracking = "TRK-FORGETME-4711"
	forgetPlain    = []string{"Forgetmenot", "Flat Zq9", "Forgettown", "Oblivia", "FG9 7QZ", "Secondforget", forgetTracking}
	keepAddr       = &ordersv1.Address{Name: "Bo Keepsake", Line1: "5 Keepsake Street", City: "Keeptown", Country: "DE"}
	keepTracking   = "TRK-KEEPME-0815"
)

type env struct {
	dataDir string
	master  []byte
	cmd     ordersv1.OrderCommandServiceClient
	query   ordersv1.OrderQueryServiceClient
	audit   ordersv1.OrderAuditServiceClient
	admin   ordersv1.OrderAdminServiceClient
	kv      jetstream.KeyValue
}

func start(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{dataDir: filepath.Join(dir, "data"), master: bytes.Repeat([]byte{0x5a}, 32)}
	keyFile := filepath.Join(dir, "master.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(e.master)), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs, _ := apptest.Start(t, map[string]string{"DATA_DIR": e.dataDir, "PII_MASTER_KEY_FILE": keyFile, "ROLES": "command,query,audit"})
	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.cmd, e.query = ordersv1.NewOrderCommandServiceClient(conn), ordersv1.NewOrderQueryServiceClient(conn)
	e.audit, e.admin = ordersv1.NewOrderAuditServiceClient(conn), ordersv1.NewOrderAdminServiceClient(conn)
	nc, err := nats.Connect(addrs.NATS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if e.kv, err = js.KeyValue(t.Context(), keys.DefaultBucket); err != nil {
		t.Fatal(err)
	}
	return e
}

// shippedOrder creates, places, pays and ships an order; it returns the
// last position.
func (e *env) shippedOrder(t *testing.T, id, customer string, addr *ordersv1.Address, tracking string) uint64 {
	t.Helper()
	ctx := t.Context()
	check := func(pos uint64, err error) uint64 {
		t.Helper()
		if err != nil {
			t.Fatalf("order %s: %v", id, err)
		}
		return pos
	}
	r1, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: id + "-c", OrderId: id, CustomerId: customer, Currency: "EUR",
		Lines: []*ordersv1.LineItem{{Sku: "SKU-1", Quantity: 2, UnitPrice: 1250}}, ShippingAddress: addr})
	check(r1.GetPosition(), err)
	r2, err := e.cmd.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: id + "-p", OrderId: id, Tax: 100})
	check(r2.GetPosition(), err)
	r3, err := e.cmd.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: id + "-r", OrderId: id,
		Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "psp-" + id, Amount: 2600})
	check(r3.GetPosition(), err)
	r4, err := e.cmd.ShipOrder(ctx, &ordersv1.ShipOrderRequest{RequestId: id + "-s", OrderId: id, Carrier: "DHL", TrackingNumber: tracking})
	return check(r4.GetPosition(), err)
}

func (e *env) order(t *testing.T, id string, minPos uint64) *ordersv1.Order {
	t.Helper()
	r, err := e.query.GetOrder(t.Context(), &ordersv1.GetOrderRequest{OrderId: id, Consistency: &ordersv1.Consistency{MinPosition: minPos}})
	if err != nil {
		t.Fatalf("GetOrder %s: %v", id, err)
	}
	return r.GetOrder()
}

// filesHolding returns the files under dir holding any of needles, with
// the needle found.
func filesHolding(t *testing.T, dir string, needles map[string][]byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for name, n := range needles {
			if bytes.Contains(b, n) {
				hits = append(hits, p+": "+name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// dataKey reads the customer's wrapped key from the bucket and unwraps it
// as internal/pii does (AES-256-GCM, nonce first, customer id bound).
func (e *env) dataKey(t *testing.T, customer string) (wrapped, raw []byte, version uint64) {
	t.Helper()
	entry, err := e.kv.Get(t.Context(), base64.RawURLEncoding.EncodeToString([]byte(customer)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := aes.NewCipher(e.master)
	g, _ := cipher.NewGCM(b)
	w := entry.Value()
	raw, err = g.Open(nil, w[:12], w[12:], []byte("orderstream-pii/v1 data key\x00"+customer))
	if err != nil || len(raw) != 32 {
		t.Fatalf("unwrapping the data key: %v", err)
	}
	return w, raw, entry.Revision()
}

// checkpoint writes the WAL of the SQLite database at path into it, from a
// connection of its own, as another process could.
func checkpoint(t *testing.T, path string) {
	t.Helper()
	// ordersd checkpoints in the background too, and its readers hold
	// snapshots for a moment: a TRUNCATE checkpoint waits for both through
	// SQLite's busy handler, as ordersd's own connections do.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// SQLite answers busy at once, without its busy handler, when
	// another connection is checkpointing (ordersd's background
	// checkpointer): try again, as ordersd's own scrub does.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var busy, frames, done int
		err := db.QueryRowContext(t.Context(), `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &done)
		if err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint: still busy after 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func needles(wrapped, raw []byte) map[string][]byte {
	n := map[string][]byte{"wrapped key": wrapped, "data key": raw}
	for _, s := range forgetPlain {
		n[s] = []byte(s)
	}
	return n
}

func TestForgetCustomerLeavesNothingOnDisk(t *testing.T) {
	ctx := t.Context()
	e := start(t)
	e.shippedOrder(t, "ord-f1", "cust-forget", forgetAddr, forgetTracking)
	r, err := e.cmd.SetShippingAddress(ctx, &ordersv1.SetShippingAddressRequest{RequestId: "ord-f2-c", OrderId: "ord-f2"})
	if err == nil {
		t.Fatalf("SetShippingAddress on a missing order answered %v", r)
	}
	if _, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "ord-f2-c", OrderId: "ord-f2", CustomerId: "cust-forget", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cmd.SetShippingAddress(ctx, &ordersv1.SetShippingAddressRequest{RequestId: "ord-f2-a", OrderId: "ord-f2", ShippingAddress: forgetAddr2}); err != nil {
		t.Fatal(err)
	}
	pos := e.shippedOrder(t, "ord-k1", "cust-keep", keepAddr, keepTracking)
	if o := e.order(t, "ord-f1", pos); o.GetShippingAddress().GetLine1() != forgetAddr.Line1 || o.GetTrackingNumber() != forgetTracking {
		t.Fatalf("before forgetting, the read model shows %v", o)
	}
	wrapped, raw, version := e.dataKey(t, "cust-forget")
	streams := filepath.Join(e.dataDir, "nats", "jetstream")
	if hits := filesHolding(t, streams, map[string][]byte{"Forgetmenot": []byte("Forgetmenot"), forgetTracking: []byte(forgetTracking)}); len(hits) > 0 {
		t.Fatalf("personal data in plain text in the event store: %v", hits)
	}
	if hits := filesHolding(t, e.dataDir, needles(wrapped, raw)); len(hits) == 0 {
		t.Fatal("the scan finds nothing before forgetting: it would prove nothing after")
	}
	// Move the plain text from the WAL into the database file, as SQLite
	// does on its own from time to time: erasure must scrub both.
	checkpoint(t, filepath.Join(e.dataDir, "readmodel", "orders.db"))
	if hits := filesHolding(t, filepath.Join(e.dataDir, "readmodel", "orders.db"), map[string][]byte{"Forgetmenot": []byte("Forgetmenot")}); len(hits) == 0 {
		t.Fatal("the read model file does not hold the address before forgetting")
	}

	fr, err := e.admin.ForgetCustomer(ctx, &ordersv1.ForgetCustomerRequest{CustomerId: "cust-forget", RequestId: "forget-1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.admin.ForgetCustomer(ctx, &ordersv1.ForgetCustomerRequest{CustomerId: "cust-forget", RequestId: "forget-1"})
	if err != nil || again.GetPosition() != fr.GetPosition() {
		t.Fatalf("retried ForgetCustomer = %v, %v; want position %d", again, err, fr.GetPosition())
	}
	e.checkErased(t, fr.GetPosition())
	if hits := filesHolding(t, e.dataDir, needles(wrapped, raw)); len(hits) > 0 {
		t.Fatalf("after ForgetCustomer, still on disk:\n%s", strings.Join(hits, "\n"))
	}
	e.checkVerified(t)

	// A new order of the same customer id gets a new key, readable.
	nr, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "ord-f3-c", OrderId: "ord-f3", CustomerId: "cust-forget", Currency: "EUR", ShippingAddress: keepAddr})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, v2 := e.dataKey(t, "cust-forget"); v2 <= version {
		t.Fatalf("new key version %d, the forgotten one was %d", v2, version)
	}
	if o := e.order(t, "ord-f3", nr.GetPosition()); o.GetShippingAddress().GetLine1() != keepAddr.Line1 || o.GetPersonalDataErased() {
		t.Fatalf("the new order reads %v", o.GetShippingAddress())
	}

	// A rebuild gives the same result.
	e.rebuild(t)
	e.checkErased(t, nr.GetPosition())
	if o := e.order(t, "ord-f3", 0); o.GetShippingAddress().GetLine1() != keepAddr.Line1 {
		t.Fatalf("after the rebuild the new order reads %v", o.GetShippingAddress())
	}
	if hits := filesHolding(t, e.dataDir, needles(wrapped, raw)); len(hits) > 0 {
		t.Fatalf("after the rebuild, on disk:\n%s", strings.Join(hits, "\n"))
	}
}

// checkErased: the forgotten customer's orders show erased markers in the
// read model, history and GetOrderAt; their other facts and the other
// customer's order are intact.
func (e *env) checkErased(t *testing.T, pos uint64) {
	t.Helper()
	o := e.order(t, "ord-f1", pos)
	if !o.GetPersonalDataErased() || !o.GetShippingAddress().GetErased() || o.GetShippingAddress().GetLine1() != "" ||
		!o.GetTrackingNumberErased() || o.GetTrackingNumber() != "" {
		t.Fatalf("forgotten order reads %v", o)
	}
	if o.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_SHIPPED || o.GetGrandTotal() != 2600 || o.GetCarrier() != "DHL" || len(o.GetLines()) != 1 {
		t.Fatalf("forgotten order lost non-personal facts: %v", o)
	}
	if o := e.order(t, "ord-f2", pos); !o.GetShippingAddress().GetErased() {
		t.Fatalf("second forgotten order reads %v", o.GetShippingAddress())
	}
	if k := e.order(t, "ord-k1", pos); k.GetShippingAddress().GetLine1() != keepAddr.Line1 || k.GetTrackingNumber() != keepTracking || k.GetPersonalDataErased() {
		t.Fatalf("other customer's order reads %v", k)
	}
	h, err := e.audit.GetOrderHistory(t.Context(), &ordersv1.GetOrderHistoryRequest{OrderId: "ord-f1"})
	if err != nil {
		t.Fatal(err)
	}
	if a := h.GetEvents()[0].GetEvent().GetOrderCreated().GetShippingAddress(); !a.GetErased() || a.GetName() != "" {
		t.Fatalf("history shows the address %v", a)
	}
	export, err := e.audit.StreamEvents(t.Context(), &ordersv1.StreamEventsRequest{OrderIds: []string{"ord-f1"}, EventTypes: []string{"OrderShipped"}})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := export.Recv(); err != nil || !m.GetEvent().GetEvent().GetOrderShipped().GetTrackingNumberErased() {
		t.Fatalf("export shows %v, %v", m.GetEvent().GetEvent(), err)
	}
	at, err := e.audit.GetOrderAt(t.Context(), &ordersv1.GetOrderAtRequest{OrderId: "ord-f1", Point: &ordersv1.GetOrderAtRequest_Version{Version: 1}})
	if err != nil || !at.GetOrder().GetShippingAddress().GetErased() {
		t.Fatalf("GetOrderAt = %v, %v", at.GetOrder().GetShippingAddress(), err)
	}
}

func (e *env) checkVerified(t *testing.T) {
	t.Helper()
	for _, id := range []string{"ord-f1", "ord-f2", "ord-k1", "_customers"} {
		v, err := e.audit.VerifyOrder(t.Context(), &ordersv1.VerifyOrderRequest{OrderId: id})
		if err != nil || !v.GetOk() {
			t.Fatalf("VerifyOrder %s = %v, %v", id, v, err)
		}
	}
	s, err := e.audit.VerifyLog(t.Context(), &ordersv1.VerifyLogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.GetBroken() != nil || (m.GetSummary() != nil && m.GetSummary().GetOrdersBroken() != 0) {
			t.Fatalf("VerifyLog: %v", m)
		}
	}
}

func (e *env) rebuild(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s, err := e.admin.RebuildReadModel(ctx, &ordersv1.RebuildReadModelRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("rebuild: %v", err)
		}
		if m.GetSwapped() {
			return
		}
	}
}

// TestBadMasterKeyStopsStartup: a PII_MASTER_KEY_FILE that is missing or
// not a key stops ordersd at start-up.
func TestBadMasterKeyStopsStartup(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]error{bad: pii.ErrMasterKey, filepath.Join(t.TempDir(), "missing.key"): fs.ErrNotExist} {
		cfg := apptest.Config(t, map[string]string{"PII_MASTER_KEY_FILE": file, "ROLES": "command"})
		err := app.Run(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		if !errors.Is(err, want) {
			t.Fatalf("Run with PII_MASTER_KEY_FILE=%s: %v, want %v", file, err, want)
		}
	}
}

// TestForgetCustomerOverREST: the REST route answers the erasure's
// position, and the same position for a retry.
func TestForgetCustomerOverREST(t *testing.T) {
	addrs, _ := apptest.Start(t, map[string]string{"ROLES": "command,query,audit,gateway"})
	forget := func() string {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addrs.HTTP+"/v1/admin/customers/cust-rest:forget",
			strings.NewReader(`{"request_id":"rest-forget-1"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body struct{ Position string }
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != http.StatusOK || body.Position == "" {
			t.Fatalf("POST forget: %d %+v %v", res.StatusCode, body, err)
		}
		return body.Position
	}
	if first, again := forget(), forget(); first != again {
		t.Fatalf("retry answered position %s, first %s", again, first)
	}
}
