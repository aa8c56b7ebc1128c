package reconcile

import (
	"fmt"
	"testing"
)

// BenchmarkDiff measures the pure diff of N converged bottles (the no-op
// case) and of N bottles from nothing.
func BenchmarkDiff(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		var desired, observed []Resource
		var scope []string
		for i := range n {
			w := world{bottle: fmt.Sprintf("b%04d", i), subnet: fmt.Sprintf("10.%d.%d", i/256, i%256), env: "e", bundle: "none"}
			desired = append(desired, w.desired()...)
			observed = append(observed, w.observed()...)
			scope = append(scope, w.bottle)
		}
		for _, c := range []struct {
			name string
			obs  []Resource
		}{{"noop", observed}, {"create", nil}} {
			b.Run(fmt.Sprintf("%s/bottles=%d", c.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for range b.N {
					p, err := Diff(desired, c.obs, Scope{Bottles: scope})
					if err != nil || len(p.Steps) != 4*n {
						b.Fatalf("diff: %v", err)
					}
				}
			})
		}
	}
}
