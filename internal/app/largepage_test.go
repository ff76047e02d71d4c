package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/app/apptest"
)

// A page of page_size orders at the largest a command allows (100 lines,
// 64-byte SKUs, 256-character address fields) is over 5 MB, more than a
// gRPC client receives by default (the gateway's own connection, here):
// such a page stops short of its size, and the pages together hold every
// order once, over REST as over gRPC.
func TestListPagesOfLargeOrdersFitAClientsDefault(t *testing.T) {
	addrs, _ := apptest.Start(t, map[string]string{"ROLES": "command,query,audit,gateway"})
	conn := dial(t, addrs.GRPC)
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	text := strings.Repeat("ü", 256)
	const orders = 500
	var last atomic.Uint64
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				req := &ordersv1.CreateOrderRequest{RequestId: fmt.Sprintf("big-%d", i), CustomerId: "cust-big", Currency: "EUR",
					ShippingAddress: &ordersv1.Address{Name: text, Line1: text, Line2: text, City: text, Region: text, PostalCode: text, Country: "GB"}}
				for l := range 100 {
					req.Lines = append(req.Lines, &ordersv1.LineItem{Sku: fmt.Sprintf("%064d", l), Quantity: 999, UnitPrice: 99999})
				}
				res, err := cmd.CreateOrder(t.Context(), req)
				if err != nil {
					// Not return: the jobs left must still be taken,
					// or the sender would wait for ever.
					t.Error(err)
					continue
				}
				for cur := last.Load(); res.GetPosition() > cur && !last.CompareAndSwap(cur, res.GetPosition()); cur = last.Load() {
				}
			}
		})
	}
	for i := range orders {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if t.Failed() {
		return
	}

	t.Run("rest", func(t *testing.T) {
		seen := map[string]bool{}
		pages := 0
		for token := ""; pages == 0 || token != ""; pages++ {
			q := url.Values{"customerId": {"cust-big"}, "pageSize": {"500"}}
			if token != "" {
				q.Set("pageToken", token)
			}
			req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+addrs.HTTP+"/v1/orders?"+q.Encode(), nil)
			req.Header.Set("X-Min-Position", fmt.Sprint(last.Load()))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var page struct {
				Orders        []struct{ OrderID string }
				NextPageToken string
			}
			err = json.NewDecoder(res.Body).Decode(&page)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || err != nil {
				t.Fatalf("page %d: %d, %v", pages+1, res.StatusCode, err)
			}
			for _, o := range page.Orders {
				if seen[o.OrderID] {
					t.Fatalf("order %s on two pages", o.OrderID)
				}
				seen[o.OrderID] = true
			}
			token = page.NextPageToken
		}
		if len(seen) != orders || pages < 2 {
			t.Fatalf("%d orders in %d pages, want %d in more than one", len(seen), pages, orders)
		}
	})
	t.Run("grpc", func(t *testing.T) {
		q := ordersv1.NewOrderQueryServiceClient(conn)
		req := &ordersv1.ListOrdersRequest{CustomerId: "cust-big", PageSize: 500}
		n, pages := 0, 0
		for pages == 0 || req.PageToken != "" {
			res, err := q.ListOrders(t.Context(), req)
			if err != nil {
				t.Fatalf("page %d: %v", pages+1, err)
			}
			n, pages, req.PageToken = n+len(res.GetOrders()), pages+1, res.GetNextPageToken()
		}
		if n != orders || pages < 2 {
			t.Fatalf("%d orders in %d pages, want %d in more than one", n, pages, orders)
		}
	})
}
