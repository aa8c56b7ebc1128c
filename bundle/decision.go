package bundle

import (
	"encoding/json"
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
// DNS daemon let through or refused, and why. It never holds a path, a
// query string, a header or a body.
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
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
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
// endpoint.
type decisionLog struct {
	log zerolog.Logger
	st  *statusState
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
	l.count(reason == "")
	e := l.log.Info().Str(FieldDaemon, spec.DaemonEgress).
		Str(FieldDecision, decisionOf(reason)).Str(FieldHost, logSafe(host, maxHostLen)).Int(FieldPort, port).
		Str(FieldMethod, logSafe(method, maxMethodLen))
	addRuleOrReason(e, rule, reason).Msg(MessageEgressDecision)
}

// dns logs one DNS decision: allowed when reason is "". Every field is
// capped (see logSafe), whatever the query held.
func (l *decisionLog) dns(host, qtype, rule, reason string) {
	l.count(reason == "")
	e := l.log.Info().Str(FieldDaemon, spec.DaemonDNS).
		Str(FieldDecision, decisionOf(reason)).Str(FieldHost, logSafe(host, maxHostLen)).
		Str(FieldQType, logSafe(qtype, maxMethodLen))
	addRuleOrReason(e, rule, reason).Msg(MessageDNSDecision)
}

func decisionOf(reason string) string {
	if reason == "" {
		return DecisionAllow
	}
	return DecisionDeny
}

func addRuleOrReason(e *zerolog.Event, rule, reason string) *zerolog.Event {
	if reason != "" {
		return e.Str(FieldReason, clip(reason, maxReasonLen))
	}
	return e.Str(FieldRule, clip(rule, maxRuleLen))
}
