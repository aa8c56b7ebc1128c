package bundle

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/bottle-apply/bottle-apply/spec"
)

// Bounds on what reaches the log and the denials' text.
const (
	// maxHostLen caps a logged host: no host name is longer.
	maxHostLen = spec.MaxHostLen
	// maxReasonLen caps a logged reason.
	maxReasonLen = 512
	// maxRuleLen caps a logged rule.
	maxRuleLen = 512
	// maxMethodLen caps a logged method.
	maxMethodLen = 64
	// maxQuoteLen caps what a reason quotes of the request.
	maxQuoteLen = 64
)

// checkHost returns what is wrong with a request's host, lower case and
// without its trailing dot, or "" when it is an IP literal or a host name
// by the rules of spec.CheckHost. The answer never quotes the host.
func checkHost(h string) string {
	e := spec.CheckHost(h)
	if e == nil {
		return ""
	}
	switch e.Rule {
	case spec.HostEmpty:
		return "the request names no host"
	case spec.HostTooLong:
		return fmt.Sprintf("the host is %d bytes long; a host name has at most %d", len(h), spec.MaxHostLen)
	case spec.HostEmptyLabel:
		return "the host is not a host name: it has an empty label"
	case spec.HostLongLabel:
		return fmt.Sprintf("the host is not a host name: a label is %d bytes long, at most %d", len(e.Label), spec.MaxLabelLen)
	case spec.HostBadByte:
		return fmt.Sprintf("the host is not a host name: it holds %s; a host name has letters, digits, '-' and '_'",
			strconv.QuoteRuneToASCII(rune(e.Byte)))
	case spec.HostHyphen:
		return "the host is not a host name: a label starts or ends with '-'"
	}
	return "the host is not a host name"
}

// clip cuts s to at most n bytes, at a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "..."
	i := max(n-len(mark), 0)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + mark
}

// quoteClip quotes at most maxQuoteLen bytes of s, for a reason.
func quoteClip(s string) string {
	return strconv.QuoteToASCII(clip(s, maxQuoteLen))
}

// logSafe clips s to n bytes and replaces what is not printable ASCII with
// '?', so that a field is at most n bytes in the log whatever the request
// held. Host names and IP literals pass unchanged.
func logSafe(s string, n int) string {
	s = clip(s, n)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
					b[j] = '?'
				}
			}
			return string(b)
		}
	}
	return s
}
