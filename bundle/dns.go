package bundle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/bottle-apply/bottle-apply/spec"
)

const (
	// dnsForwardTimeout bounds one exchange with the upstream.
	dnsForwardTimeout = 5 * time.Second
	defaultResolvConf = "/etc/resolv.conf"
)

// dnsUpstream is s when set (ip:port), else the first nameserver of the
// resolv.conf at path, port 53.
func dnsUpstream(s, path string) (string, error) {
	if s != "" {
		ap, err := netip.ParseAddrPort(s)
		if err != nil || ap.Port() == 0 {
			return "", fmt.Errorf("BOTTLE_DNS_UPSTREAM: %q is not ip:port (e.g. 127.0.0.11:53)", s)
		}
		return ap.String(), nil
	}
	if path == "" {
		path = defaultResolvConf
	}
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return "", fmt.Errorf("BOTTLE_DNS_UPSTREAM is not set and %s cannot be read for a nameserver: %w", path, err)
	}
	for _, s := range cc.Servers {
		if ip, err := netip.ParseAddr(s); err == nil {
			return netip.AddrPortFrom(ip, 53).String(), nil
		}
	}
	return "", fmt.Errorf("BOTTLE_DNS_UPSTREAM is not set and %s names no nameserver", path)
}

// dnsDaemon answers queries for names the egress rules cover by forwarding
// them to the upstream, and refuses the rest.
type dnsDaemon struct {
	p        *policy
	dl       *decisionLog
	pc       net.PacketConn
	ln       net.Listener
	udp, tcp *dns.Server
	base     context.Context
	cancel   context.CancelFunc

	// inFlight holds a token per query being answered; a query finding it
	// full is answered SERVFAIL, and turnedAway counts those for the
	// warning, logged at most once a second (lastWarn, in UnixNano).
	inFlight   chan struct{}
	turnedAway atomic.Int64
	lastWarn   atomic.Int64

	mu     sync.Mutex
	served bool // serve started the servers
	shut   bool // shutdown began
	// started and exited are closed when each server has started serving
	// and when its loop has returned.
	started, exited [2]chan struct{}
	wg              sync.WaitGroup
}

func listenDNS(p *policy, dl *decisionLog) (*dnsDaemon, error) {
	pc, ln, err := listenUDPAndTCP(p.listenIP, p.dnsPort)
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	if ln.Addr().String() == p.upstream {
		_ = pc.Close()
		_ = ln.Close()
		return nil, fmt.Errorf("dns: the upstream %s is the DNS daemon itself", p.upstream)
	}
	// Each TCP connection holds a goroutine until miekg/dns's idle
	// timeout: cap them too.
	ln = newLimitListener(ln, maxDNSConns, nil)
	d := &dnsDaemon{p: p, dl: dl, pc: pc, ln: ln, inFlight: make(chan struct{}, p.dnsInFlight)}
	d.base, d.cancel = context.WithCancel(context.Background())
	for i := range 2 {
		d.started[i], d.exited[i] = make(chan struct{}), make(chan struct{})
	}
	// The notify functions run once per server; ActivateAndServe calls them
	// only after it has marked the server started.
	d.udp = &dns.Server{PacketConn: pc, Handler: d, UDPSize: dns.DefaultMsgSize,
		NotifyStartedFunc: func() { close(d.started[0]) }}
	d.tcp = &dns.Server{Listener: ln, Handler: d,
		NotifyStartedFunc: func() { close(d.started[1]) }}
	return d, nil
}

// listenUDPAndTCP binds both on the same port; port 0 picks one free for
// both.
func listenUDPAndTCP(ip netip.Addr, port uint16) (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		addr := netip.AddrPortFrom(ip, port)
		pc, err := net.ListenPacket("udp", addr.String())
		if err != nil {
			return nil, nil, fmt.Errorf("listen on %s/udp: %w", addr, err)
		}
		addr = netip.MustParseAddrPort(pc.LocalAddr().String())
		ln, err := net.Listen("tcp", addr.String())
		if err == nil {
			return pc, ln, nil
		}
		_ = pc.Close()
		lastErr = fmt.Errorf("listen on %s/tcp: %w", addr, err)
		if port != 0 {
			break
		}
	}
	return nil, nil, lastErr
}

func (d *dnsDaemon) addr() string { return d.ln.Addr().String() }

func (d *dnsDaemon) serve() error {
	d.mu.Lock()
	if d.shut {
		d.mu.Unlock()
		return nil
	}
	d.served = true
	errc := make(chan error, 2)
	for i, s := range []*dns.Server{d.udp, d.tcp} {
		d.wg.Go(func() {
			defer close(d.exited[i])
			errc <- s.ActivateAndServe()
		})
	}
	d.mu.Unlock()
	for range 2 {
		if err := <-errc; err != nil {
			return fmt.Errorf("dns: %w", err)
		}
	}
	return nil
}

func (d *dnsDaemon) shutdown(ctx context.Context) {
	d.mu.Lock()
	d.shut = true
	served := d.served
	d.mu.Unlock()
	defer d.cancel()
	if !served {
		_ = d.pc.Close()
		_ = d.ln.Close()
		return
	}
	for i, s := range []*dns.Server{d.udp, d.tcp} {
		select {
		case <-d.started[i]:
			_ = s.ShutdownContext(ctx)
		case <-d.exited[i]:
		}
	}
	d.cancel() // in-flight forwards give up
	d.wg.Wait()
	_ = d.pc.Close()
	_ = d.ln.Close()
}

// ServeDNS implements dns.Handler.
func (d *dnsDaemon) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	select {
	case d.inFlight <- struct{}{}:
		// The slot is free again before the answer leaves: a client that
		// has its answer may ask again at once.
		rw := &releasingWriter{ResponseWriter: w, release: sync.OnceFunc(func() { <-d.inFlight })}
		defer rw.release()
		w = rw
	default:
		d.turnAway(w, r)
		return
	}
	network := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	m := new(dns.Msg)
	if len(r.Question) != 1 { // dns.DefaultMsgAcceptFunc turns these away already
		_ = w.WriteMsg(m.SetRcode(r, dns.RcodeFormatError))
		return
	}
	q := r.Question[0]
	host, qtype := spec.NormalizeHost(q.Name), dns.Type(q.Qtype).String()
	if r.Opcode != dns.OpcodeQuery {
		d.dl.dns(host, qtype, "", fmt.Sprintf("opcode %s is not answered", dns.OpcodeToString[r.Opcode]))
		_ = w.WriteMsg(m.SetRcode(r, dns.RcodeNotImplemented))
		return
	}
	if q.Qclass != dns.ClassINET {
		d.dl.dns(host, qtype, "", fmt.Sprintf("class %s is not answered", dns.Class(q.Qclass)))
		_ = w.WriteMsg(m.SetRcode(r, dns.RcodeRefused))
		return
	}
	// A name is matched on its labels as the wire holds them: a label with
	// an escaped dot (x.attacker\.example.com) or byte is refused, not
	// read as more labels.
	if strings.ContainsRune(q.Name, '\\') {
		d.dl.dns(host, qtype, "", "the name is not a host name: a label holds an escaped character (a dot or a byte that is not a letter, digit, '-' or '_')")
		_ = w.WriteMsg(m.SetRcode(r, dns.RcodeRefused))
		return
	}
	// With no escape, host is the wire's labels joined by dots, lower case.
	if msg := checkHost(host); msg != "" {
		d.dl.dns(host, qtype, "", msg)
		_ = w.WriteMsg(m.SetRcode(r, dns.RcodeRefused))
		return
	}
	rule, ok := d.p.rules.MatchHost(host)
	if !ok {
		d.dl.dns(host, qtype, "", fmt.Sprintf("no rule in %s covers %s", allowRulesField, host))
		_ = w.WriteMsg(m.SetRcode(r, dns.RcodeRefused))
		return
	}
	// The type before the name's limits: a refused query counts no name.
	if msg := refusedType(q.Qtype); msg != "" {
		d.dl.dns(host, qtype, "", msg)
		_ = w.WriteMsg(m.SetRcode(r, dns.RcodeRefused))
		return
	}
	if msg := d.p.names.check(host, rule); msg != "" {
		d.dl.dns(host, qtype, "", msg)
		_ = w.WriteMsg(m.SetRcode(r, dns.RcodeRefused))
		return
	}
	d.dl.dns(host, qtype, rule.String(), "")
	ctx, cancel := context.WithTimeout(d.base, dnsForwardTimeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: dnsForwardTimeout}
	resp, _, err := c.ExchangeContext(ctx, r, d.p.upstream)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			d.dl.log.Warn().Str(FieldDaemon, spec.DaemonDNS).Str(FieldHost, host).Str(FieldQType, qtype).
				Str("upstream", d.p.upstream).Err(err).Msg("dns forward failed")
		}
		_ = w.WriteMsg(m.SetRcode(r, dns.RcodeServerFailure))
		return
	}
	resp.Id = r.Id
	stripECH(resp)
	resp.Compress = true
	if network == "udp" {
		size := dns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

// turnAway answers a query over the in-flight cap SERVFAIL, before reading
// it, and warns at most once a second.
func (d *dnsDaemon) turnAway(w dns.ResponseWriter, r *dns.Msg) {
	d.turnedAway.Add(1)
	now := time.Now().UnixNano()
	if last := d.lastWarn.Load(); now-last >= int64(time.Second) && d.lastWarn.CompareAndSwap(last, now) {
		n := d.turnedAway.Swap(0)
		d.dl.log.Warn().Str(FieldDaemon, spec.DaemonDNS).Int("limit", cap(d.inFlight)).Int64("turned_away", n).
			Msg("dns: too many queries in flight; answered SERVFAIL")
	}
	_ = w.WriteMsg(new(dns.Msg).SetRcode(r, dns.RcodeServerFailure))
}

// releasingWriter releases a query's in-flight slot before its answer is
// written.
type releasingWriter struct {
	dns.ResponseWriter
	release func()
}

func (w *releasingWriter) WriteMsg(m *dns.Msg) error {
	w.release()
	return w.ResponseWriter.WriteMsg(m)
}
