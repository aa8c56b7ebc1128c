// Package bundle is the program that runs inside a bottle's bundle
// container: it starts the daemons the spec selects (the egress proxy, the
// DNS daemon) and a loopback status endpoint, logs every egress and DNS
// decision as one JSON line, and runs until told to stop.
//
// The egress proxy adds the credentials the agent never holds
// (spec.bundle.egress.credentials, read from BOTTLE_CREDENTIALS_FILE): a
// CONNECT to a credentialed host is intercepted, not tunnelled. The proxy
// ends the agent's TLS with a certificate of the bottle's own CA (package
// ca, whose name constraints permit the credentialed hosts alone), sets
// the credential's header on each request whose Host is that host, and
// sends it on over its own TLS connection, verified against the roots it
// carries. A request for another Host in the tunnel, an SNI naming
// another host, and a plain-HTTP request for a credentialed host are
// refused with no header added; redirects are never followed. Every
// other CONNECT stays an untouched tunnel.
package bundle

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/spec"
)

const (
	// StatusPort is the default port of the status endpoint, on loopback.
	StatusPort = 9901
	// DefaultStatusAddr is where the status endpoint listens unless
	// BOTTLE_STATUS_ADDR says otherwise.
	DefaultStatusAddr = "127.0.0.1:9901"
	// DefaultProxyPort is the egress proxy's port unless BOTTLE_PROXY_PORT
	// says otherwise.
	DefaultProxyPort = "8888"
	// DefaultDNSPort is the DNS daemon's port unless BOTTLE_DNS_PORT says
	// otherwise.
	DefaultDNSPort = "53"
)

// shutdownGrace bounds how long in-flight requests may finish once Run's
// context is done; then every connection is closed.
const shutdownGrace = 5 * time.Second

// Resource limits: whatever runs in the bottle cannot make the bundle hold
// more than these.
const (
	// maxProxyConns caps the egress proxy's client connections, tunnels
	// included; more wait in the listen backlog.
	maxProxyConns = 1024
	// tunnelIdleTimeout closes a CONNECT or websocket tunnel (and an
	// upstream connection that stalls) after this long without a byte
	// either way: long enough for a model's streamed answer to pause.
	tunnelIdleTimeout = 15 * time.Minute
	// maxDNSInFlight caps the DNS queries being answered at once; more are
	// answered SERVFAIL.
	maxDNSInFlight = 256
	// maxDNSConns caps the DNS daemon's TCP connections.
	maxDNSConns = 256
)

// Config is what the bundle reads from its environment (ConfigFromEnv).
// Ports are strings as they come from the environment; "0" picks a free
// port.
type Config struct {
	// Bottle is BOTTLE_NAME.
	Bottle string
	// Daemons is BOTTLE_DAEMONS: "egress", "dns".
	Daemons []string
	// EgressAllow is BOTTLE_EGRESS_ALLOW: spec.bundle.egress.allow rules
	// (see spec.ParseEgressRule).
	EgressAllow []string
	// AllowCIDRs is BOTTLE_ALLOW_CIDRS: the only ranges of IP literals the
	// proxy lets through, and of the private and shared addresses (10/8,
	// 172.16/12, 192.168/16, 100.64/10, 198.18/15, fc00::/7) a name may
	// resolve to.
	AllowCIDRs []string
	// HostAddrs is BOTTLE_HOST_ADDRS: the host's addresses on the bottle's
	// networks (their gateways). The proxy never connects to them, nor to
	// any gateway of the bundle's routing table, whatever AllowCIDRs says.
	HostAddrs []string
	// DenyCIDRs is BOTTLE_DENY_CIDRS: ranges and addresses the proxy never
	// connects to, whatever AllowCIDRs or a name says: the subnet pool
	// (every bottle's networks) and each of the host's interface
	// addresses, as /32 or /128.
	DenyCIDRs []string
	// EgressSubnet is BOTTLE_EGRESS_SUBNET, the bundle's egress network:
	// the one part of DenyCIDRs the proxy may reach (when AllowCIDRs says
	// so), where the bottle's own upstreams may sit. Its gateway is the
	// host's, in HostAddrs.
	EgressSubnet string
	// ListenIP is BOTTLE_LISTEN_IP, the bundle's address on the bottle's
	// internal network: the daemons listen there and nowhere else. Required
	// when a daemon is selected.
	ListenIP string
	// ProxyPort is BOTTLE_PROXY_PORT (DefaultProxyPort).
	ProxyPort string
	// DNSPort is BOTTLE_DNS_PORT (DefaultDNSPort), UDP and TCP.
	DNSPort string
	// StatusAddr is BOTTLE_STATUS_ADDR (DefaultStatusAddr); it must be a
	// loopback address.
	StatusAddr string
	// DNSUpstream is BOTTLE_DNS_UPSTREAM, the "ip:port" the DNS daemon
	// forwards allowed queries to; empty means the first nameserver of
	// /etc/resolv.conf, port 53.
	DNSUpstream string
	// DNSMaxNameLength, DNSMaxLabelLength and DNSNewNamesPerMinute are
	// BOTTLE_DNS_MAX_NAME_LENGTH, BOTTLE_DNS_MAX_LABEL_LENGTH and
	// BOTTLE_DNS_NEW_NAMES_PER_MINUTE (spec.bundle.egress.dns): the limits
	// on names under wildcard rules, which the DNS daemon and the proxy
	// share. Empty or "0" means spec's default.
	DNSMaxNameLength     string
	DNSMaxLabelLength    string
	DNSNewNamesPerMinute string
	// CredentialsFile is BOTTLE_CREDENTIALS_FILE: the JSON of
	// bottle.BundleSecrets (the bottle's CA, the credentials' values,
	// the trusted certificates). When set, the proxy adds the
	// credentials to the requests of their hosts (credential.go); when
	// it cannot be read the bundle does not start.
	CredentialsFile string

	// Seams for this package's tests; the zero values are the production
	// behaviour. lookup resolves a name, checkAddr says why the proxy must
	// not connect to an address ("" when it may), resolvConf is the file
	// the DNS upstream defaults from, procNet the directory of the routing
	// tables (route, ipv6_route), tunnelIdle how long a tunnel may carry
	// no byte, maxConns the proxy's cap on client connections and
	// dnsInFlight the DNS daemon's cap on queries being answered; now is
	// the clock of the name limits and of the decision log's refusal windows.
	lookup      func(ctx context.Context, host string) ([]netip.Addr, error)
	checkAddr   func(netip.AddrPort) string
	resolvConf  string
	procNet     string
	tunnelIdle  time.Duration
	maxConns    int
	dnsInFlight int
	now         func() time.Time

	// sniffTimeout is how long a checked tunnel waits for its first
	// bytes, sniffPorts which CONNECT ports are checked and how (nil: 443
	// for TLS, 80 for HTTP).
	sniffTimeout time.Duration
	sniffPorts   map[int]sniffKind

	// upstreamRoots makes the pool that verifies the upstreams of
	// intercepted tunnels, before the credentials file's trust is added
	// (nil: the roots of golang.org/x/crypto/x509roots/fallback).
	upstreamRoots func() *x509.CertPool
}

// ConfigFromEnv reads the variables the docker provider sets, with the
// defaults filled in.
func ConfigFromEnv(getenv func(string) string) Config {
	return Config{
		Bottle:       getenv("BOTTLE_NAME"),
		Daemons:      splitList(getenv("BOTTLE_DAEMONS")),
		EgressAllow:  splitList(getenv("BOTTLE_EGRESS_ALLOW")),
		AllowCIDRs:   splitList(getenv("BOTTLE_ALLOW_CIDRS")),
		HostAddrs:    splitList(getenv("BOTTLE_HOST_ADDRS")),
		DenyCIDRs:    splitList(getenv("BOTTLE_DENY_CIDRS")),
		EgressSubnet: strings.TrimSpace(getenv("BOTTLE_EGRESS_SUBNET")),
		ListenIP:     strings.TrimSpace(getenv("BOTTLE_LISTEN_IP")),
		ProxyPort:    strings.TrimSpace(getenv("BOTTLE_PROXY_PORT")),
		DNSPort:      strings.TrimSpace(getenv("BOTTLE_DNS_PORT")),
		StatusAddr:   strings.TrimSpace(getenv("BOTTLE_STATUS_ADDR")),
		DNSUpstream:  strings.TrimSpace(getenv("BOTTLE_DNS_UPSTREAM")),

		DNSMaxNameLength:     strings.TrimSpace(getenv("BOTTLE_DNS_MAX_NAME_LENGTH")),
		DNSMaxLabelLength:    strings.TrimSpace(getenv("BOTTLE_DNS_MAX_LABEL_LENGTH")),
		DNSNewNamesPerMinute: strings.TrimSpace(getenv("BOTTLE_DNS_NEW_NAMES_PER_MINUTE")),
		CredentialsFile:      strings.TrimSpace(getenv("BOTTLE_CREDENTIALS_FILE")),
	}.withDefaults()
}

func (c Config) withDefaults() Config {
	if c.ProxyPort == "" {
		c.ProxyPort = DefaultProxyPort
	}
	if c.DNSPort == "" {
		c.DNSPort = DefaultDNSPort
	}
	if c.StatusAddr == "" {
		c.StatusAddr = DefaultStatusAddr
	}
	return c
}

// orDefault is v, or def when v is the zero value (or negative).
func orDefault[T int | time.Duration | string](v, def T) T {
	var zero T
	if v == zero || v < zero {
		return def
	}
	return v
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// daemons binds each daemon this build can run.
var daemons = map[string]func(*policy, *decisionLog) (server, error){
	spec.DaemonEgress: func(p *policy, dl *decisionLog) (server, error) { return listenEgress(p, dl) },
	spec.DaemonDNS:    func(p *policy, dl *decisionLog) (server, error) { return listenDNS(p, dl) },
}

// server is one bound listener set with its serving loop.
type server interface {
	// addr is the address it listens on.
	addr() string
	// serve blocks until shutdown; it returns nil after a shutdown.
	serve() error
	// shutdown stops accepting, lets in-flight work finish until ctx is
	// done, then closes everything.
	shutdown(ctx context.Context)
}

// Run binds every selected daemon and the status endpoint, logs one "ready"
// JSON line to w, and serves until ctx is done; then it shuts down. Every
// egress and DNS decision is one JSON line on w (see Decision). With no
// daemon selected it logs "no daemons selected" and idles.
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	cfg = cfg.withDefaults()
	log := newLogger(w, cfg.Bottle)
	var selected []string
	for _, d := range cfg.Daemons {
		if daemons[d] == nil {
			return fmt.Errorf("daemon %q is not available in this bundle build", d)
		}
		if !slices.Contains(selected, d) {
			selected = append(selected, d)
		}
	}
	if len(selected) == 0 {
		log.Info().Msg("no daemons selected")
		<-ctx.Done()
		log.Info().Msg("stopping")
		return nil
	}
	p, err := newPolicy(cfg)
	if err != nil {
		return err
	}
	st := &statusState{bottle: cfg.Bottle}
	dl := newDecisionLog(log, st, cfg.now)
	var servers []server
	closeAll := func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // nothing is serving yet: close at once
		for _, s := range servers {
			s.shutdown(ctx)
		}
	}
	for _, d := range selected {
		s, err := daemons[d](p, dl)
		if err != nil {
			closeAll()
			return err
		}
		servers = append(servers, s)
		st.daemons = append(st.daemons, DaemonStatus{Name: d, Listen: s.addr()})
	}
	ss, err := listenStatus(p.statusAddr, st, log)
	if err != nil {
		closeAll()
		return err
	}
	servers = append(servers, ss)

	log.Info().Interface("daemons", st.daemons).Str("status", ss.addr()).Msg("ready")
	st.ready.Store(true)

	var wg sync.WaitGroup
	errc := make(chan error, len(servers))
	for _, s := range servers {
		wg.Go(func() {
			if err := s.serve(); err != nil {
				errc <- err
			}
		})
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	st.ready.Store(false)
	log.Info().Msg("stopping")
	grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	var sw sync.WaitGroup
	for _, s := range servers {
		sw.Go(func() { s.shutdown(grace) })
	}
	sw.Wait()
	wg.Wait()
	dl.close() // the last window's summaries
	log.Info().Msg("stopped")
	return err
}

// policy is the parsed, validated configuration the daemons share.
type policy struct {
	bottle     string
	rules      spec.EgressRules
	cidrs      []netip.Prefix
	listenIP   netip.Addr
	proxyPort  uint16
	dnsPort    uint16
	statusAddr netip.AddrPort
	upstream   string
	// hosts are the host's addresses (BOTTLE_HOST_ADDRS) and the gateways
	// of the bundle's routes, each with why the proxy never connects there.
	hosts map[netip.Addr]string
	// denied are BOTTLE_DENY_CIDRS, but egressSubnet.
	denied       []netip.Prefix
	egressSubnet netip.Prefix
	// names holds the names under wildcard rules to their limits, for the
	// DNS daemon and the proxy.
	names       *nameGuard
	lookup      func(ctx context.Context, host string) ([]netip.Addr, error)
	checkAddr   func(netip.AddrPort) string
	resolvConf  string
	dnsWanted   bool
	tunnelIdle  time.Duration
	maxConns    int
	dnsInFlight int

	sniffTimeout time.Duration
	sniffPorts   map[int]sniffKind // nil: sniffFor's defaults

	// creds are the credentials the proxy adds, nil when there are none;
	// now is the clock of their certificates (nil: the wall clock).
	creds *credentials
	now   func() time.Time
}

// newPolicy validates cfg and reports every problem at once.
func newPolicy(cfg Config) (*policy, error) {
	p := &policy{bottle: cfg.Bottle, lookup: cfg.lookup, checkAddr: cfg.checkAddr, resolvConf: cfg.resolvConf,
		hosts:       map[netip.Addr]string{},
		tunnelIdle:  orDefault(cfg.tunnelIdle, tunnelIdleTimeout),
		maxConns:    orDefault(cfg.maxConns, maxProxyConns),
		dnsInFlight: orDefault(cfg.dnsInFlight, maxDNSInFlight),
	}
	p.sniffTimeout, p.sniffPorts = orDefault(cfg.sniffTimeout, sniffTimeout), cfg.sniffPorts
	var errs []error
	var err error
	if p.rules, err = spec.ParseEgressRules(cfg.EgressAllow); err != nil {
		errs = append(errs, fmt.Errorf("BOTTLE_EGRESS_ALLOW: %w", err))
	}
	for _, s := range cfg.AllowCIDRs {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("BOTTLE_ALLOW_CIDRS: %q is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)", s))
			continue
		}
		p.cidrs = append(p.cidrs, pfx)
	}
	for _, s := range cfg.HostAddrs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("BOTTLE_HOST_ADDRS: %q is not an IP address", s))
			continue
		}
		p.hosts[ip.Unmap().WithZone("")] = hostAddrKind
	}
	for _, s := range cfg.DenyCIDRs {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("BOTTLE_DENY_CIDRS: %q is not a CIDR", s))
			continue
		}
		p.denied = append(p.denied, pfx.Masked())
	}
	if cfg.EgressSubnet != "" {
		pfx, err := netip.ParsePrefix(cfg.EgressSubnet)
		if err != nil {
			errs = append(errs, fmt.Errorf("BOTTLE_EGRESS_SUBNET: %q is not a CIDR", cfg.EgressSubnet))
		} else {
			p.egressSubnet = pfx.Masked()
		}
	}
	gws, err := routeGateways(orDefault(cfg.procNet, defaultProcNet))
	if err != nil {
		errs = append(errs, err)
	}
	for _, ip := range gws {
		if _, ok := p.hosts[ip]; !ok {
			p.hosts[ip] = gatewayKind
		}
	}
	switch ip, err := netip.ParseAddr(cfg.ListenIP); {
	case cfg.ListenIP == "":
		errs = append(errs, errors.New("BOTTLE_LISTEN_IP is not set: the daemons listen only on the bundle's address on the bottle's network"))
	case err != nil || ip.Zone() != "":
		errs = append(errs, fmt.Errorf("BOTTLE_LISTEN_IP: %q is not an IP address", cfg.ListenIP))
	case ip.IsUnspecified() || ip.IsMulticast():
		errs = append(errs, fmt.Errorf("BOTTLE_LISTEN_IP: %s is not a unicast address of this host; the daemons never listen on every address", ip))
	default:
		p.listenIP = ip.Unmap()
	}
	if p.proxyPort, err = parsePort("BOTTLE_PROXY_PORT", cfg.ProxyPort); err != nil {
		errs = append(errs, err)
	}
	if p.dnsPort, err = parsePort("BOTTLE_DNS_PORT", cfg.DNSPort); err != nil {
		errs = append(errs, err)
	}
	if ap, err := netip.ParseAddrPort(cfg.StatusAddr); err != nil || !ap.Addr().IsLoopback() {
		errs = append(errs, fmt.Errorf("BOTTLE_STATUS_ADDR: %q is not a loopback address and port; the status endpoint listens only on loopback (e.g. %s)", cfg.StatusAddr, DefaultStatusAddr))
	} else {
		p.statusAddr = ap
	}
	maxName, err := parseLimit("BOTTLE_DNS_MAX_NAME_LENGTH", cfg.DNSMaxNameLength, spec.DefaultDNSMaxNameLength, spec.MaxHostLen)
	if err != nil {
		errs = append(errs, err)
	}
	maxLabel, err := parseLimit("BOTTLE_DNS_MAX_LABEL_LENGTH", cfg.DNSMaxLabelLength, spec.DefaultDNSMaxLabelLength, spec.MaxLabelLen)
	if err != nil {
		errs = append(errs, err)
	}
	perMinute, err := parseLimit("BOTTLE_DNS_NEW_NAMES_PER_MINUTE", cfg.DNSNewNamesPerMinute, spec.DefaultDNSNewNamesPerMinute, maxNewNamesPerMinute)
	if err != nil {
		errs = append(errs, err)
	}
	p.names = newNameGuard(maxName, maxLabel, perMinute, cfg.now)
	p.now = cfg.now
	if cfg.CredentialsFile != "" {
		if p.creds, err = loadCredentials(cfg.CredentialsFile, p.clock(), cfg.upstreamRoots); err != nil {
			errs = append(errs, err)
		}
	}
	p.dnsWanted = slices.Contains(cfg.Daemons, spec.DaemonDNS)
	if p.dnsWanted {
		if p.upstream, err = dnsUpstream(cfg.DNSUpstream, p.resolvConf); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if p.lookup == nil {
		p.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if p.checkAddr == nil {
		own, err := ownAddrs()
		if err != nil {
			return nil, err
		}
		own[p.listenIP] = true
		p.checkAddr = func(ap netip.AddrPort) string { return blockedKind(ap.Addr(), own) }
	}
	return p, nil
}

func parsePort(name, s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a port number (0 to 65535)", name, s)
	}
	return uint16(n), nil
}

// newLogger writes JSON lines, one Write each, safe for concurrent use.
func newLogger(w io.Writer, bottle string) zerolog.Logger {
	return zerolog.New(zerolog.SyncWriter(w)).Level(zerolog.InfoLevel).Hook(timeHook{}).
		With().Str(FieldBottle, bottle).Logger()
}

// timeFormat is RFC 3339 with microseconds, in UTC. zerolog's own
// Timestamp reads package globals, which we leave alone.
const timeFormat = "2006-01-02T15:04:05.000000Z07:00"

type timeHook struct{}

func (timeHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(FieldTime, time.Now().UTC().Format(timeFormat))
}
