package bundle

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/spec"
)

// Fields of a decision line. Decision's JSON tags spell the same names.
const (
	FieldTime     = "time"
	FieldLevel    = "level"
	FieldBottle   = "bottle"
	FieldDaemon   = "daemon"
	FieldDecision = "decision"
	FieldHost     = "host"
	FieldPort     = "port"
	FieldMethod   = "method"
	FieldQType    = "qtype"
	FieldRule     = "rule"
	FieldReason   = "reason"
	FieldStatus   = "status"
	FieldClient   = "client"
	FieldMore     = "more"
	FieldMessage  = "message"
)

// Values of the decision and message fields.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"

	MessageEgressDecision = "egress decision"
	MessageDNSDecision    = "dns decision"
)

// Decision is one line of the decision log: what the egress proxy or the
// DNS daemon let through or refused, and why. It never holds a query
// string, a header's value or a body, and a path only on the requests
// inside an intercepted tunnel (credential.go).
type Decision struct {
	Time   time.Time `json:"time"`
	Level  string    `json:"level"`
	Bottle string    `json:"bottle"`
	// Daemon is "egress" or "dns".
	Daemon string `json:"daemon"`
	// Decision is "allow" or "deny".
	Decision string `json:"decision"`
	Host     string `json:"host"`
	// Port is the egress target's port; 0 for DNS.
	Port int `json:"port,omitempty"`
	// Method is the egress request's method (CONNECT, GET, ...).
	Method string `json:"method,omitempty"`
	// QType is the DNS query's type (A, AAAA, ...).
	QType string `json:"qtype,omitempty"`
	// Rule is what allowed the request: an egress rule in its canonical
	// form, or the allowCIDR that holds an IP literal.
	Rule string `json:"rule,omitempty"`
	// Reason says why a request was denied.
	Reason string `json:"reason,omitempty"`
	// Status and Client are set on the refusals of requests the proxy's
	// HTTP server turns away before the policy sees them (malformed,
	// oversized, or cut short): the status it answered (absent when it
	// answered nothing) and the client's address.
	Status int    `json:"status,omitempty"`
	Client string `json:"client,omitempty"`
	// More, when set, makes the line a summary, not a decision: it stands
	// for More refusals like it (the same fields but time) that were not
	// logged one by one in the last second. A summary without a host
	// counts the refusals of every kind beyond the log's rate.
	More int `json:"more,omitempty"`
	// Credential names the credential the proxy added to a request inside
	// an intercepted tunnel: its host and header names, never its value.
	// Path is that request's path, without its query.
	Credential string `json:"credential,omitempty"`
	Path       string `json:"path,omitempty"`
	Message    string `json:"message"`
}

// Allowed reports whether the decision let the request through.
func (d Decision) Allowed() bool { return d.Decision == DecisionAllow }

// ParseDecision parses one log line; ok is false unless it is an egress or
// DNS decision line.
func ParseDecision(line []byte) (Decision, bool) {
	var d Decision
	if err := json.Unmarshal(line, &d); err != nil {
		return Decision{}, false
	}
	switch {
	case d.Message == MessageEgressDecision && d.Daemon == spec.DaemonEgress:
	case d.Message == MessageDNSDecision && d.Daemon == spec.DaemonDNS:
	default:
		return Decision{}, false
	}
	if d.Decision != DecisionAllow && d.Decision != DecisionDeny {
		return Decision{}, false
	}
	return d, true
}

// decisionLog writes decision lines and counts them for the status
// endpoint. Every decision is counted; decisions alike are logged one by
// one up to a rate (see refusalGate).
type decisionLog struct {
	log zerolog.Logger
	st  *statusState
	// gate sums up repeated refusals, allowGate repeated allowed
	// decisions; nil logs each in full.
	gate, allowGate *refusalGate
}

// newDecisionLog aggregates refusals in windows of now's clock (nil: the
// wall clock).
func newDecisionLog(log zerolog.Logger, st *statusState, now func() time.Time) *decisionLog {
	l := &decisionLog{log: log, st: st}
	l.gate = newRefusalGate(now, func(ss []summary) { l.summaries(ss, false) })
	l.allowGate = newRefusalGate(now, func(ss []summary) { l.summaries(ss, true) })
	return l
}

// close writes what the current window counted; refusals after it are
// logged in full.
func (l *decisionLog) close() {
	if l.gate != nil {
		l.gate.close()
	}
	if l.allowGate != nil {
		l.allowGate.close()
	}
}

// line is a decision line's content but its time. Its fields are capped
// and safe to log; with client reduced to an address (key), it is what
// makes refusals alike.
type line struct {
	daemon string
	host   string
	port   int
	method string
	qtype  string
	rule   string
	reason string
	status int
	client string
	// credential and path: see Decision.
	credential string
	path       string
}

// key is l without the client's port: refusals alike come from one
// address, over any number of connections.
func (l line) key() line {
	if ap, err := netip.ParseAddrPort(l.client); err == nil {
		l.client = ap.Addr().String()
	}
	return l
}

func (l *decisionLog) count(allowed bool) {
	if allowed {
		l.st.allow.Add(1)
	} else {
		l.st.deny.Add(1)
	}
}

// egress logs one egress decision: allowed when reason is "". Every field
// is capped (see logSafe), whatever the request held.
func (l *decisionLog) egress(method, host string, port int, rule, reason string) {
	l.decide(line{daemon: spec.DaemonEgress, host: logSafe(host, maxHostLen), port: port,
		method: logSafe(method, maxMethodLen), rule: clip(rule, maxRuleLen), reason: clip(reason, maxReasonLen)})
}

// request logs a request inside an intercepted tunnel: allowed when
// reason is "", with the names of the credential added (credential) and
// the path.
func (l *decisionLog) request(method, host string, port int, rule, reason, credential, path string) {
	l.decide(line{daemon: spec.DaemonEgress, host: logSafe(host, maxHostLen), port: port,
		method: logSafe(method, maxMethodLen), rule: clip(rule, maxRuleLen), reason: clip(reason, maxReasonLen),
		credential: logSafe(credential, maxHostLen+maxRuleLen), path: logSafe(path, maxPathLen)})
}

// refused logs a request the proxy's HTTP server turned away before the
// policy saw it, from client, answered status (0: nothing).
func (l *decisionLog) refused(client string, status int, method, host string, port int, reason string) {
	l.decide(line{daemon: spec.DaemonEgress, host: logSafe(host, maxHostLen), port: port,
		method: logSafe(method, maxMethodLen), reason: clip(reason, maxReasonLen), status: status,
		client: logSafe(client, maxClientLen)})
}

// dns logs one DNS decision: allowed when reason is "". Every field is
// capped (see logSafe), whatever the query held.
func (l *decisionLog) dns(host, qtype, rule, reason string) {
	l.decide(line{daemon: spec.DaemonDNS, host: logSafe(host, maxHostLen), qtype: logSafe(qtype, maxMethodLen),
		rule: clip(rule, maxRuleLen), reason: clip(reason, maxReasonLen)})
}

// decide counts d and logs it, or leaves it to a summary.
func (l *decisionLog) decide(d line) {
	allowed := d.reason == ""
	l.count(allowed)
	// Allowed decisions are summed up as refusals are: an agent that
	// repeats an allowed lookup or request as fast as it can would
	// otherwise flush the trail out of the rotated log just the same.
	gate := l.gate
	if allowed {
		gate = l.allowGate
	}
	if gate != nil {
		full, done := gate.admit(d)
		l.summaries(done, allowed)
		if !full {
			return
		}
	}
	l.write(d, 0, allowed)
}

// summaries writes the summaries of a window of refusals, or of allowed
// decisions.
func (l *decisionLog) summaries(ss []summary, allowed bool) {
	for _, s := range ss {
		d := s.line
		switch {
		case d.daemon != "" && d.host == "" && d.reason == "" && d.rule == "":
			what := "refusals"
			if allowed {
				what = "allowed decisions"
			}
			d.reason = fmt.Sprintf("%d more %s in the last second, of kinds beyond the %d a second logged one by one", s.more, what, refusalRate)
		case allowed:
			d.reason = fmt.Sprintf("%d more like this in the last second", s.more)
		default:
			d.reason = clip(fmt.Sprintf("%d more like this in the last second: %s", s.more, d.reason), maxReasonLen)
		}
		l.write(d, s.more, allowed)
	}
}

func (l *decisionLog) write(d line, more int, allowed bool) {
	decision := DecisionDeny
	if allowed {
		decision = DecisionAllow
	}
	e := l.log.Info().Str(FieldDaemon, d.daemon).Str(FieldDecision, decision).Str(FieldHost, d.host)
	msg := MessageEgressDecision
	if d.daemon == spec.DaemonDNS {
		e.Str(FieldQType, d.qtype)
		msg = MessageDNSDecision
	} else {
		e.Int(FieldPort, d.port).Str(FieldMethod, d.method)
	}
	if d.status != 0 {
		e.Int(FieldStatus, d.status)
	}
	if d.client != "" {
		e.Str(FieldClient, d.client)
	}
	if more > 0 {
		e.Int(FieldMore, more)
	}
	if allowed {
		e.Str(FieldRule, d.rule)
	}
	if d.reason != "" {
		e.Str(FieldReason, d.reason)
	}
	if d.credential != "" {
		e.Str(FieldCredential, d.credential)
	}
	if d.path != "" {
		e.Str(FieldPath, d.path)
	}
	e.Msg(msg)
}

func decisionOf(reason string) string {
	if reason == "" {
		return DecisionAllow
	}
	return DecisionDeny
}
