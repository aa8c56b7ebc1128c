package probe

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// Confinement is what WaitConfined needs: addresses that answer any pod
// of a cluster without NetworkPolicy (the node's kubelet) and that the
// bottle's policy forbids.
type Confinement struct {
	// Addrs are host:port to knock on.
	Addrs []string
	// Within bounds the wait; Every is the time between rounds;
	// Silence is how long a knock waits for an answer.
	Within, Every, Silence time.Duration
	// Rounds is how many silent rounds in a row prove the policy in
	// force.
	Rounds int
	// dial is the seam for tests.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// WaitConfined waits until none of c.Addrs (services that listen) takes a
// connection, several rounds in a row: the network plugin enforces the pod's NetworkPolicy, which it
// programs some time after the pod starts. It runs as the agent pod's
// first init container, so that the agent's own command never runs in
// the window before; a plugin that never enforces fails it, naming what
// answered.
func WaitConfined(ctx context.Context, c Confinement) error {
	if len(c.Addrs) == 0 {
		return fmt.Errorf("no address to knock on")
	}
	dial := c.dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	deadline := time.Now().Add(c.Within)
	silent := 0
	var answered []string
	for {
		answered = answered[:0]
		for _, a := range c.Addrs {
			kctx, cancel := context.WithTimeout(ctx, c.Silence)
			conn, err := dial(kctx, "tcp", a)
			cancel()
			// Only a connection is an answer: the knocked service
			// listens, and a policy may reject (a refusal) as well as
			// drop (silence).
			if err == nil {
				conn.Close()
				answered = append(answered, a+" (connected)")
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(answered) == 0 {
			silent++
			if silent >= c.Rounds {
				return nil
			}
		} else {
			silent = 0
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the pod's network is not confined %s after its start: %s answered; "+
				"the cluster's network plugin does not enforce NetworkPolicy (Calico, Cilium, kube-router do; flannel alone does not)",
				c.Within, strings.Join(answered, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.Every):
		}
	}
}
