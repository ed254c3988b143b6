package openai

import (
	"net/http"
	"reflect"
	"testing"
)

// TestSharedHeader: with its own client, a Model gives a request the map
// of headers an earlier request had when they hold the same headers, and
// the request's own otherwise (or with a client given in Config).
func TestSharedHeader(t *testing.T) {
	t.Parallel()
	first := func() http.Header {
		return http.Header{"Authorization": {"Bearer k"}, "X-Stainless-Retry-Count": {"0"}, "Accept": {"application/json"}}
	}
	same := func(a, b http.Header) bool { return reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer() }
	retry := first()
	retry.Set("X-Stainless-Retry-Count", "1")
	extra := first()
	extra.Add("Accept", "text/event-stream")

	own, err := New(Config{BaseURL: "http://127.0.0.1:1/v1"})
	if err != nil {
		t.Fatal(err)
	}
	given, err := New(Config{BaseURL: "http://127.0.0.1:1/v1", HTTPClient: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	h1 := first()
	if got := own.sharedHeader(h1); !same(got, h1) {
		t.Fatal("the first request's headers were replaced")
	}
	h2 := first()
	shared := own.sharedHeader(h2)
	if same(shared, h2) || !reflect.DeepEqual(shared, h2) {
		t.Fatalf("a second request with the same headers kept its own (or got others: %v)", shared)
	}
	for name, h := range map[string]http.Header{"retry count": retry, "another value": extra} {
		if got := own.sharedHeader(h); !same(got, h) {
			t.Errorf("%s: the request's headers were replaced by %v", name, got)
		}
	}
	if h3 := first(); !same(own.sharedHeader(h3), shared) {
		t.Error("a third request did not get the same map")
	}
	for range 2 {
		if h := first(); !same(given.sharedHeader(h), h) {
			t.Error("with a client given in Config, a request's headers were replaced")
		}
	}
}
