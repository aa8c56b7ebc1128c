package main

import (
	"fmt"
	"os"
	"testing"
)

// testCache is the cache directory (XDG_CACHE_HOME) of the runs whose
// engine address is made up for one test, such as a proxy's socket: the
// records of those addresses stay out of the user's cache, and go when
// the tests end.
var testCache string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bottle-apply-test-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testCache = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
