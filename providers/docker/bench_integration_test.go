package docker

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// BenchmarkIntegrationApply measures, against the real engine, a first
// apply from nothing and a no-op apply of one bottle, with the number of
// Docker API calls each makes (api-calls/op, writes/op).
func BenchmarkIntegrationApply(b *testing.B) {
	c, cnt := testenv.CountingDocker(b)
	builds := bundlebin.Dir(filepath.Dir(testenv.BundleBinary(b, runtime.GOARCH)))
	ref := "bottle-apply-test/bundle:" + testenv.Name("b")
	p := newProvider(c, Options{BundleImage: ref, BundleBinary: builds.Path, Version: "bench"})
	agent := testenv.AgentImage(b, c)
	newBottle := func() bottle.Bottle {
		name := testenv.Name("bench")
		testenv.CleanupBottle(b, c, name)
		bt := spec.Bottle{APIVersion: spec.APIVersion, Kind: spec.KindBottle, Metadata: spec.Metadata{Name: name},
			Spec: spec.Spec{Agent: spec.Agent{Image: agent, Command: []string{"sleep", "infinity"}}}}
		bt.Default()
		return bottle.New(bt)
	}
	apply := func(bt bottle.Bottle, destroy bool) {
		res, err := reconcile.Run(context.Background(), []reconcile.Provider{p}, []bottle.Bottle{bt}, reconcile.Options{Destroy: destroy})
		if err != nil || !res.Converged {
			b.Fatalf("apply: %v", err)
		}
	}
	// The built-in bundle image is made once, outside the measurements.
	warm := newBottle()
	apply(warm, false)
	apply(warm, true)

	report := func(b *testing.B, calls, writes int) {
		b.ReportMetric(float64(calls)/float64(b.N), "api-calls/op")
		b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
	}
	b.Run("first", func(b *testing.B) {
		calls, writes := 0, 0
		for range b.N {
			bt := newBottle()
			cnt.Reset()
			b.StartTimer()
			apply(bt, false)
			b.StopTimer()
			got := cnt.Reset()
			calls, writes = calls+len(got), writes+len(testenv.Writes(got))
			apply(bt, true)
		}
		report(b, calls, writes)
	})
	b.Run("noop", func(b *testing.B) {
		bt := newBottle()
		apply(bt, false)
		b.Cleanup(func() { apply(bt, true) })
		cnt.Reset()
		b.ResetTimer()
		for range b.N {
			apply(bt, false)
		}
		b.StopTimer()
		got := cnt.Reset()
		report(b, len(got), len(testenv.Writes(got)))
	})
	// A no-op apply --set S --prune: it observes every managed bottle
	// with the same lists, so it makes the calls of a no-op apply.
	b.Run("noop-prune", func(b *testing.B) {
		bt := newBottle()
		bt.Set = testenv.Name("set")
		run := func() {
			res, err := reconcile.Run(context.Background(), []reconcile.Provider{p}, []bottle.Bottle{bt}, reconcile.Options{Prune: bt.Set})
			if err != nil || !res.Converged || res.Changed() {
				b.Fatalf("apply --prune: %v, changed %v", err, res != nil && res.Changed())
			}
		}
		apply(bt, false)
		b.Cleanup(func() { apply(bt, true) })
		cnt.Reset()
		b.ResetTimer()
		for range b.N {
			run()
		}
		b.StopTimer()
		got := cnt.Reset()
		report(b, len(got), len(testenv.Writes(got)))
	})
	b.Run("destroy", func(b *testing.B) {
		calls, writes := 0, 0
		for range b.N {
			bt := newBottle()
			apply(bt, false)
			cnt.Reset()
			b.StartTimer()
			apply(bt, true)
			b.StopTimer()
			got := cnt.Reset()
			calls, writes = calls+len(got), writes+len(testenv.Writes(got))
		}
		report(b, calls, writes)
	})
}
