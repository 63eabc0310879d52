package fleet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	testfixture "github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testenv"
)

// nixEvaluator runs the real nix CLI. It lives in the test because the
// nix package (which owns running nix) comes after this one.
type nixEvaluator struct{ nix string }

func (e nixEvaluator) EvalJSON(ctx context.Context, installable, apply string, out any) error {
	argv := []string{e.nix, "eval", "--json", installable, "--apply", apply}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// Never let nix reach for a binary cache: there is no network here.
	cmd.Env = testfixture.NixEnv(os.Environ())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nix eval %s: %w: %s", installable, err, strings.TrimSpace(stderr.String()))
	}
	return json.Unmarshal(stdout.Bytes(), out)
}

// requireNix skips a test that needs real nix, loudly, or fails it when
// TETHER_E2E=require says it must run.
func requireNix(t *testing.T) nixEvaluator {
	t.Helper()
	testenv.NeedCommands(t, "nix")
	path, _ := exec.LookPath("nix")
	return nixEvaluator{nix: path}
}

func nonce(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// realFlake has no inputs; its derivations use /bin/sh as builder, which is
// fine because evaluation must never build them. The nonce makes the out
// paths new, so "not in the store" proves nothing was built.
const realFlake = `{
  outputs = { self }:
    let
      mk = name: system: derivation {
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" "echo built > $out" ];
        nonce = "@NONCE@";
      };
    in {
      deploy = {
        sshUser = "deployer";
        sshOpts = [ "-o" "ConnectTimeout=5" ];
        confirmTimeout = 45;
        nodes.frame1 = {
          hostname = "frame1.lan";
          sshOpts = [ "-p" "2222" ];
          profilesOrder = [ "system" ];
          profiles.system = {
            user = "root";
            path = mk "frame1-system" "x86_64-linux";
          };
          profiles.apps = {
            magicRollback = false;
            path = mk "frame1-apps" "x86_64-linux";
          };
        };
      };
      nixosConfigurations.rpi.config.system.build.toplevel = mk "rpi-toplevel" "aarch64-linux";
      nixosConfigurations.web.config.system.build.toplevel = mk "web-toplevel" "x86_64-linux";
    };
}
`

const realConfig = `
[defaults]
ssh_user = "root"

[nodes.frame1]
tags = ["lan", "builder"]

[nodes.rpi]
hostname = "10.0.1.20"
jump = ["frame1"]
tags = ["lan"]
`

func TestLoadRealNix(t *testing.T) {
	ev := requireNix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"flake.nix":   strings.ReplaceAll(realFlake, "@NONCE@", nonce(t)),
		"tether.toml": realConfig,
	})
	f, err := Load(ctx, ev, LoadOptions{Dir: dir, LocalUser: "ci"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := strings.Join(f.Names(), ","), "frame1,rpi"; got != want {
		t.Fatalf("nodes = %s, want %s (web is only a nixosConfiguration, not a node)", got, want)
	}

	frame1 := f.Nodes["frame1"]
	if frame1.Source != FromDeployNodes|FromConfig {
		t.Errorf("frame1 source = %v", frame1.Source)
	}
	if len(frame1.Profiles) != 2 || frame1.Profiles[0].Name != "system" || frame1.Profiles[1].Name != "apps" {
		t.Fatalf("frame1 profiles = %+v", frame1.Profiles)
	}
	sys := frame1.Profiles[0]
	if !strings.HasSuffix(sys.DrvPath, "-frame1-system.drv") || !strings.HasSuffix(sys.OutPath, "-frame1-system") {
		t.Errorf("frame1 system paths = %q, %q", sys.DrvPath, sys.OutPath)
	}
	// deploy top level says deployer, tether.toml [defaults] says root and
	// sits above it.
	if sys.Settings.SSHUser != "root" || sys.Settings.ConfirmTimeout != 45*time.Second {
		t.Errorf("frame1 system settings: sshUser %q confirmTimeout %v", sys.Settings.SSHUser, sys.Settings.ConfirmTimeout)
	}
	if got := strings.Join(sys.Settings.SSHOpts, " "); got != "-o ConnectTimeout=5 -p 2222" {
		t.Errorf("frame1 sshOpts = %q", got)
	}
	if at := sys.Settings.Origins[KeyConfirmTimeout]; at.File != "flake.nix" || at.Line != 14 {
		t.Errorf("confirmTimeout origin = %+v, want flake.nix:14", at)
	}
	if sys.ProfilePath != "/nix/var/nix/profiles/system" || frame1.System != "x86_64-linux" {
		t.Errorf("frame1 profile path %q system %q", sys.ProfilePath, frame1.System)
	}
	if frame1.Profiles[1].Settings.MagicRollback {
		t.Errorf("apps profile magicRollback = true, want false from the profile level")
	}

	rpi := f.Nodes["rpi"]
	if rpi.Source != FromConfig || rpi.System != "aarch64-linux" || len(rpi.Profiles) != 1 {
		t.Fatalf("rpi = %+v", rpi)
	}
	if p := rpi.Profiles[0]; !strings.HasSuffix(p.OutPath, "-rpi-toplevel") || p.Settings.User != "root" {
		t.Errorf("rpi profile = %+v", p)
	}
	if len(rpi.Jumps) != 1 || rpi.Jumps[0].Host != "frame1.lan" || rpi.Jumps[0].User != "root" {
		t.Errorf("rpi jumps = %+v", rpi.Jumps)
	}

	// Evaluation instantiated the derivations but built nothing.
	for _, p := range append(frame1.Profiles, rpi.Profiles...) {
		if _, err := os.Stat(p.DrvPath); err != nil {
			t.Errorf("derivation %s not instantiated: %v", p.DrvPath, err)
		}
		if _, err := os.Lstat(p.OutPath); err == nil {
			t.Errorf("%s exists: loading the fleet built it", p.OutPath)
		} else if !os.IsNotExist(err) {
			t.Errorf("stat %s: %v", p.OutPath, err)
		}
	}
}

func TestLoadRealNixEdgeCases(t *testing.T) {
	ev := requireNix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("no deploy output, tether.toml only", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{
			"flake.nix": `{ outputs = { self }: {
  nixosConfigurations.box.config.system.build.toplevel = derivation {
    name = "box"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; nonce = "` + nonce(t) + `";
  };
}; }`,
			"tether.toml": "[nodes.box]\n[nodes.ghost]\n",
		})
		_, err := Load(ctx, ev, LoadOptions{Dir: dir, LocalUser: "ci"})
		if err == nil || !strings.Contains(err.Error(), "tether.toml:2: node ghost: nixosConfigurations.ghost.config.system.build.toplevel does not exist") {
			t.Fatalf("err = %v, want the missing configuration of ghost located at tether.toml:2", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tether.toml"), []byte("[nodes.box]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Load(ctx, ev, LoadOptions{Dir: dir, LocalUser: "ci"})
		if err != nil {
			t.Fatal(err)
		}
		if box := f.Nodes["box"]; box == nil || box.Hostname != "box" || box.Profiles[0].ProfilePath != "/nix/var/nix/profiles/system" {
			t.Fatalf("box = %+v", box)
		}
	})

	t.Run("a package named deploy hides the output", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{
			"flake.nix": `{ outputs = { self }: rec {
  packages.x86_64-linux.deploy = derivation { name = "deploy"; system = "x86_64-linux"; builder = "/bin/sh"; };
  packages.aarch64-linux.deploy = packages.x86_64-linux.deploy;
  deploy.nodes.a = { hostname = "a"; profiles.system.path = packages.x86_64-linux.deploy; };
}; }`,
		})
		_, err := Load(ctx, ev, LoadOptions{Dir: dir, LocalUser: "ci"})
		if err == nil || !strings.Contains(err.Error(), "hides the deploy output") {
			t.Fatalf("err = %v, want the shadowing explained", err)
		}
	})
}
