package nix

import (
	"context"
	"fmt"
	"strings"
)

// Platforms returns the system types the store's machine builds: its
// `system` setting first, then `extra-platforms`. A node for another
// system needs a build host that lists it (an aarch64 machine, or one with
// binfmt emulation configured).
func (r *Runner) Platforms(ctx context.Context) ([]string, error) {
	out, err := r.output(ctx, r.nixArgv([]string{"show-config"}))
	if err != nil {
		return nil, fmt.Errorf("read nix configuration: %w", err)
	}
	return ParsePlatforms(string(out)), nil
}

// ParsePlatforms reads `system` and `extra-platforms` from the output of
// `nix show-config` ("key = value" lines).
func ParsePlatforms(config string) []string {
	var system string
	var extra []string
	for _, line := range strings.Split(config, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "system":
			system = strings.TrimSpace(v)
		case "extra-platforms":
			extra = strings.Fields(v)
		}
	}
	var out []string
	if system != "" {
		out = append(out, system)
	}
	for _, p := range extra {
		if p != system {
			out = append(out, p)
		}
	}
	return out
}
