package app

import (
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

func TestEndpointLocal(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{
		"unix:///var/run/docker.sock":       true,
		"unix:///run/user/1000/docker.sock": true,
		"tcp://127.0.0.1:2376":              true,
		"tcp://[::1]:2376":                  true,
		"tcp://localhost:2375":              true,
		"tcp://10.0.0.5:2376":               false,
		"tcp://build.example.com:2376":      false,
		"ssh://me@build.example.com":        false,
		"ssh://localhost":                   false, // maybe another machine's socket through a tunnel: not checked
		"%zz":                               false,
	} {
		if got := (endpoint{Host: host}).local(); got != want {
			t.Errorf("%s: local = %v, want %v", host, got, want)
		}
	}
}

func TestCheckHostDirsOnARemoteEngine(t *testing.T) {
	t.Parallel()
	b := bottle.New(spec.Bottle{Metadata: spec.Metadata{Name: "w"}, Source: spec.Source{File: "w.yaml"}, Spec: spec.Spec{Backend: spec.BackendDocker}})
	b.Spec.Agent.Volumes = []spec.Volume{{Source: "home", Target: "/home/agent"}, {Source: "./src", Target: "/workspace"}}
	remote := &Providers{endpoint: endpoint{Host: "ssh://me@build", Source: "DOCKER_HOST"}}
	err := remote.checkHostDirs([]bottle.Bottle{b})
	if err == nil {
		t.Fatal("a host directory on a remote engine was accepted")
	}
	for _, want := range []string{"w.yaml", "bottle w", "spec.agent.volumes[1]", `"./src"`, "ssh://me@build", "named volume", "nothing was changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "volumes[0]") {
		t.Errorf("the named volume was refused: %v", err)
	}
	local := &Providers{endpoint: endpoint{Host: "unix:///var/run/docker.sock"}}
	if err := local.checkHostDirs([]bottle.Bottle{b}); err != nil {
		t.Errorf("local engine: %v", err)
	}
	smol := b
	smol.Spec.Backend = spec.BackendSmolvm
	if err := remote.checkHostDirs([]bottle.Bottle{smol}); err != nil {
		t.Errorf("a smolvm bottle's host directory, with a remote engine for its bundle: %v", err)
	}
	named := b
	named.Spec.Agent.Volumes = named.Spec.Agent.Volumes[:1]
	if err := remote.checkHostDirs([]bottle.Bottle{named}); err != nil {
		t.Errorf("a named volume on a remote engine: %v", err)
	}
}

func TestStartedAgents(t *testing.T) {
	t.Parallel()
	mk := func(name, backend string) bottle.Bottle {
		return bottle.New(spec.Bottle{Metadata: spec.Metadata{Name: name}, Spec: spec.Spec{Backend: backend}})
	}
	bottles := []bottle.Bottle{mk("a", "docker"), mk("b", "docker"), mk("c", "docker"), mk("d", "smolvm"), mk("e", "docker")}
	run := &reconcile.Result{Steps: []reconcile.StepResult{
		{Action: reconcile.Create, ResourceID: "docker-container:a/agent"},
		{Action: reconcile.Replace, ResourceID: "docker-container:b/agent"},
		{Action: reconcile.Create, ResourceID: "docker-container:c/bundle"},
		{Action: reconcile.Create, ResourceID: "smolvm-machine:d/agent"},
		{Action: reconcile.Start, ResourceID: "docker-container:e/agent", Err: "start failed"},
	}}
	if got := startedAgents(run, bottles, false); strings.Join(got, ",") != "a,b" {
		t.Errorf("started agents %q, want a,b", got)
	}
	if got := startedAgents(run, bottles, true); strings.Join(got, ",") != "a,b,e" {
		t.Errorf("tried agents %q, want a,b,e", got)
	}
}
