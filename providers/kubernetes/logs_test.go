package kubernetes

import (
	"io"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/bottle-apply/bottle-apply/bottle"
)

func TestLogs(t *testing.T) {
	t.Parallel()
	p := pod("a", "bottle-h-agent-0", "h", "agent", corev1.PodRunning, running)
	c := &Cluster{Client: fake.NewClientset(&p)}
	rc, err := c.Logs(t.Context(), &p, bottle.RoleAgent, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil || len(b) == 0 {
		t.Fatalf("read %q: %v", b, err)
	}
}
