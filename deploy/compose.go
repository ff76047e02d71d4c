package deploy

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// LoadCompose loads dir/compose.yaml with the compose-spec loader, as
// project "orderstream" and with an empty environment: the file must not
// depend on the caller's variables. It returns the loader's error, which
// names what is wrong in the file.
func LoadCompose(ctx context.Context, dir string) (*types.Project, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	p, err := loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  abs,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(abs, "compose.yaml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SetProjectName("orderstream", true)
		o.SkipResolveEnvironment = true
	})
	if err != nil {
		return nil, fmt.Errorf("compose.yaml: %w", err)
	}
	return p, nil
}

// Environment returns a service's environment as plain strings; variables
// declared without a value are left out.
func Environment(s types.ServiceConfig) map[string]string {
	m := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			m[k] = *v
		}
	}
	return m
}

// Replicas returns the number of containers compose runs for s.
func Replicas(s types.ServiceConfig) int {
	if s.Deploy != nil && s.Deploy.Replicas != nil {
		return *s.Deploy.Replicas
	}
	return 1
}

// Hosts maps every name a service answers to on the project's network
// (its name and its network aliases) to the services behind it.
func Hosts(p *types.Project) map[string][]types.ServiceConfig {
	out := map[string][]types.ServiceConfig{}
	for _, s := range p.Services {
		out[s.Name] = append(out[s.Name], s)
		for _, n := range s.Networks {
			if n == nil {
				continue
			}
			for _, a := range n.Aliases {
				out[a] = append(out[a], s)
			}
		}
	}
	return out
}
