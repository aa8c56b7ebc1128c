package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// testCache is the cache directory (XDG_CACHE_HOME) of every bottle-apply
// the tests run: what a run records of an engine and of its host (its
// addresses) starts afresh with the tests and goes when they end, so that
// neither the user's cache nor what an earlier run saw of the host (an
// address since gone) changes what the tests plan. Go's own build cache
// stays where it was.
var testCache string

func TestMain(m *testing.M) {
	if os.Getenv("GOCACHE") == "" {
		out, err := exec.Command("go", "env", "GOCACHE").Output()
		if err != nil {
			fmt.Fprintln(os.Stderr, "go env GOCACHE:", err)
			os.Exit(1)
		}
		os.Setenv("GOCACHE", strings.TrimSpace(string(out)))
	}
	dir, err := os.MkdirTemp("", "bottle-apply-test-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testCache = dir
	os.Setenv("XDG_CACHE_HOME", dir)
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
