package docker

import (
	"context"
	"fmt"
	"strings"

	"github.com/rs/zerolog"
)

// EngineInfo is who the engine is.
type EngineInfo struct {
	// ID is the engine's own: the same whatever the address it is reached
	// by (a socket, ssh, tcp, a docker context). Some engines have none.
	ID   string
	OS   string // the engine's OS type: "linux"
	Arch string // the engine's kernel's name for its architecture: "x86_64", "aarch64"
}

// EngineInfo asks the engine who it is (docker info). An error that a
// later attempt may not meet is marked reconcile.ErrRetry, as in Observe;
// one that says the address can never work says why.
func (p *Provider) EngineInfo(ctx context.Context) (EngineInfo, error) {
	info, err := p.askInfo(ctx)
	if err != nil {
		return EngineInfo{}, transient(fmt.Errorf("ask the engine who it is: %w", err))
	}
	return info, nil
}

// askInfo makes the one docker info call of a provider: the locks (the
// engine's ID) and the choice of a bottle-bundle build (its platform)
// share the answer. A failed call is made again next time.
func (p *Provider) askInfo(ctx context.Context) (EngineInfo, error) {
	p.info.Lock()
	defer p.info.Unlock()
	if p.info.known {
		return p.info.EngineInfo, nil
	}
	zerolog.Ctx(ctx).Debug().Msg("Info")
	info, err := p.eng.Info(ctx)
	if err != nil {
		return EngineInfo{}, err
	}
	p.info.EngineInfo = EngineInfo{ID: info.ID, OS: strings.ToLower(info.OSType), Arch: info.Architecture}
	p.info.known = true
	zerolog.Ctx(ctx).Debug().Str("os", info.OSType).Str("architecture", info.Architecture).Msg("the engine's platform")
	return p.info.EngineInfo, nil
}
