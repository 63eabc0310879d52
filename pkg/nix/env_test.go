package nix_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/pkg/nix"
)

// envChild marks this test binary started as the deployer under test
// (see TestNixSeesNoSecret).
const envChild = "TETHER_TEST_NIX_ENV_CHILD"

// TestMain lets a copy of this test binary named nix stand in for nix: it
// writes the environment it was given, NUL-separated, beside itself and
// answers like `nix --version`. (A shell script cannot stand in: the shell
// drops names with hyphens, such as INPUT_SSH-PRIVATE-KEY, that a real
// program receives.)
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "nix" {
		exe, err := os.Executable()
		if err == nil {
			err = os.WriteFile(filepath.Join(filepath.Dir(exe), "env"), []byte(strings.Join(os.Environ(), "\x00")+"\x00"), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("nix (Nix) 2.8.0")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// secretEnv is what a CI step's environment holds that nix must never see:
// the action's inputs (the deploy key, the token), the runner's own
// credentials, tether's key and known hosts, and secrets a workflow
// exported under names of its own.
var secretEnv = map[string]string{
	"INPUT_SSH-PRIVATE-KEY":          "-----BEGIN OPENSSH PRIVATE KEY----- secret-key-line",
	"INPUT_GITHUB-TOKEN":             "ghs_secret_input_token",
	"INPUT_SSH_PRIVATE_KEY":          "secret-key-underscore",
	"GITHUB_TOKEN":                   "ghs_secret_github_token",
	"GH_TOKEN":                       "ghp_secret_gh_token",
	"ACTIONS_RUNTIME_TOKEN":          "secret-runtime-token",
	"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "secret-oidc-token",
	"ACTIONS_ID_TOKEN_REQUEST_URL":   "https://secret-oidc.example/x",
	"TETHER_SSH_KEY":                 "secret-tether-key",
	"TETHER_KNOWN_HOSTS":             "secret-known-hosts",
	"AWS_SECRET_ACCESS_KEY":          "secret-aws",
	"DEPLOY_PASSWORD":                "secret-password",
	"NIX_GITHUB_TOKEN":               "secret-looks-like-nix",
}

// What nix needs reaches it.
var neededEnv = map[string]string{
	"HOME":          "/home/runner",
	"USER":          "runner",
	"TMPDIR":        "/tmp/runner",
	"NIX_CONFIG":    "experimental-features = nix-command flakes",
	"NIX_PATH":      "nixpkgs=/x",
	"SSL_CERT_FILE": "/etc/ssl/certs/ca.pem",
	"LC_ALL":        "C.UTF-8",
	"https_proxy":   "http://proxy.example:3128",
}

// A nix started by tether holds none of the step's secrets: the test
// starts this test binary as the deployer with a CI step's environment,
// and a fake nix on its PATH writes down the environment it was given.
func TestNixSeesNoSecret(t *testing.T) {
	if os.Getenv(envChild) != "" {
		// The deployer: run nix as tether does, with the zero Local.
		r := &nix.Runner{}
		if _, err := r.Version(context.Background()); err != nil {
			t.Fatal(err)
		}
		return
	}

	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nix"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{envChild + "=1", "PATH=" + dir + ":/usr/bin:/bin"}
	for k, v := range secretEnv {
		env = append(env, k+"="+v)
	}
	for k, v := range neededEnv {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(self, "-test.run=^TestNixSeesNoSecret$", "-test.count=1")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deployer: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatalf("the fake nix never ran: %v", err)
	}
	got := "\x00" + string(data)
	for k, v := range secretEnv {
		if strings.Contains(got, v) {
			t.Errorf("nix sees %s:\n%s", k, strings.ReplaceAll(got, "\x00", "\n"))
		}
	}
	for k, v := range neededEnv {
		if !strings.Contains(got, "\x00"+k+"="+v+"\x00") {
			t.Errorf("nix lacks %s=%s:\n%s", k, v, strings.ReplaceAll(got, "\x00", "\n"))
		}
	}
	if !strings.Contains(got, "\x00PATH="+dir+":") {
		t.Errorf("nix lacks PATH:\n%s", strings.ReplaceAll(got, "\x00", "\n"))
	}
}

func TestEnvironIsNeverNil(t *testing.T) {
	// os/exec reads a nil environment as "inherit everything".
	if env := nix.Environ([]string{"GITHUB_TOKEN=x"}); env == nil || len(env) != 0 {
		t.Errorf("Environ = %#v, want an empty, non-nil environment", env)
	}
}
