package testenv

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// ServeHTTP serves h on 127.0.0.1 until the test ends and returns its
// host:port (an in-process registry, an API stand-in).
func ServeHTTP(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
