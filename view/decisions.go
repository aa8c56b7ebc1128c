package view

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/bottle-apply/bottle-apply/bundle"
)

// Decisions copies the decision lines of a bundle's log to w: as JSON
// lines, or as one aligned line each for humans. Other lines are skipped.
func Decisions(w io.Writer, r io.Reader, asJSON, deniedOnly bool) error {
	br := bufio.NewReaderSize(r, 64<<10)
	enc := json.NewEncoder(w)
	for {
		line, err := readLine(br, maxLogLine)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the bundle's log: %w", err)
		}
		d, ok := bundle.ParseDecision(line)
		if !ok || deniedOnly && d.Allowed() {
			continue
		}
		if asJSON {
			if err := enc.Encode(d); err != nil {
				return err
			}
			continue
		}
		if _, err := fmt.Fprintln(w, formatDecision(d)); err != nil {
			return err
		}
	}
}

// maxLogLine bounds a log line; the bundle writes far shorter ones.
const maxLogLine = 64 << 10

// readLine returns the next line without its newline; a longer line than
// max is skipped whole (its start comes back, cut, so that it parses as no
// decision), so that one odd line cannot end the listing.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line) < max {
			line = append(line, chunk[:min(len(chunk), max-len(line))]...)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(line) > 0:
			return line, nil
		case err != nil:
			return nil, err
		}
		return line, nil
	}
}

// formatDecision is one decision for humans:
//
//	2026-11-27T21:30:00.123Z  deny   egress  CONNECT denied.test:443  no rule ... allows denied.test:443
func formatDecision(d bundle.Decision) string {
	what := d.Host
	if d.Port != 0 {
		what = net.JoinHostPort(d.Host, strconv.Itoa(d.Port))
	}
	verb := d.Method
	if d.Daemon == "dns" {
		verb = d.QType
	}
	why := d.Reason
	if d.Allowed() {
		why = "rule " + d.Rule
	}
	return strings.TrimRight(fmt.Sprintf("%s  %-5s  %-6s  %-7s %s  %s", d.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"), d.Decision, d.Daemon, verb, what, why), " ")
}
