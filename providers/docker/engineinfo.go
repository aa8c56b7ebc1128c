package docker

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
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

// infoEngine is the call EngineInfo makes; *client.Client has it.
type infoEngine interface {
	Info(ctx context.Context) (system.Info, error)
}

var _ infoEngine = (*client.Client)(nil)

// EngineInfo asks the engine who it is, in one call (docker info). An
// error that a later attempt may not meet is marked reconcile.ErrRetry,
// as in Observe; one that says the address can never work says why.
func (p *Provider) EngineInfo(ctx context.Context) (EngineInfo, error) {
	e, ok := p.eng.(infoEngine)
	if !ok {
		return EngineInfo{}, errors.New("internal: this engine cannot say who it is")
	}
	zerolog.Ctx(ctx).Debug().Msg("Info")
	info, err := e.Info(ctx)
	if err != nil {
		return EngineInfo{}, transient(fmt.Errorf("ask the engine who it is: %w", err))
	}
	return EngineInfo{ID: info.ID, OS: info.OSType, Arch: info.Architecture}, nil
}
