// Package bundle is the program that runs inside a bottle's bundle
// container: it starts the daemons the spec selects and runs until told to
// stop.
package bundle

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/rs/zerolog"
)

// Config is what the bundle reads from its environment.
type Config struct {
	Bottle     string
	Daemons    []string
	AllowCIDRs []string
	ProxyPort  string
}

// ConfigFromEnv reads the variables the docker provider sets.
func ConfigFromEnv(getenv func(string) string) Config {
	return Config{
		Bottle:     getenv("BOTTLE_NAME"),
		Daemons:    splitList(getenv("BOTTLE_DAEMONS")),
		AllowCIDRs: splitList(getenv("BOTTLE_ALLOW_CIDRS")),
		ProxyPort:  getenv("BOTTLE_PROXY_PORT"),
	}
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

// known lists the daemons this build can run. The egress proxy and the DNS
// daemon come with their own issue; until then a bundle that idles is the
// contract.
var known = map[string]bool{}

// Run logs its configuration as JSON lines to w and serves until ctx is
// done. With no daemon selected it logs "no daemons selected" and idles.
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	log := zerolog.New(w).With().Timestamp().Str("bottle", cfg.Bottle).Logger()
	for _, d := range cfg.Daemons {
		if !known[d] {
			return fmt.Errorf("daemon %q is not available in this bundle build", d)
		}
	}
	if len(cfg.Daemons) == 0 {
		log.Info().Msg("no daemons selected")
	} else {
		log.Info().Strs("daemons", cfg.Daemons).Msg("starting daemons")
	}
	<-ctx.Done()
	log.Info().Msg("stopping")
	return nil
}
