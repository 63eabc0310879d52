package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// WrapperName is the activation wrapper some profiles carry at their top
// level; when present it is run instead of bin/switch-to-configuration.
const WrapperName = "deploy-rs-activate"

// activation is how to activate one system.
type activation struct {
	argv []string
	env  []string // added to the runner's environment
	dir  string
}

func boolEnv(key string, v bool) string {
	if v {
		return key + "=1"
	}
	return key + "=0"
}

// activationFor picks how to activate system for action. A profile with the
// wrapper gets it, run through the profile path as the wrapper expects, with
// PROFILE, DRY_ACTIVATE, BOOT and TEST set to its location and "0"/"1". For
// dry-activate the profile is not set, so the location is the system
// itself. test never uses the wrapper: wrappers written before TEST existed
// ignore it and would switch, changing the boot default that test must leave
// alone; switch-to-configuration test is exact.
func activationFor(system string, action agent.Action, profile string) (activation, error) {
	stc := filepath.Join(system, "bin", "switch-to-configuration")
	wrapper := filepath.Join(system, WrapperName)
	if action == agent.ActionTest {
		if isExecutable(stc) {
			return activation{argv: []string{stc, string(action)}, dir: "/"}, nil
		}
		if isExecutable(wrapper) {
			return activation{}, fmt.Errorf("%s has no bin/switch-to-configuration: test needs it (its %s cannot activate without changing the boot default)", system, WrapperName)
		}
		return activation{}, fmt.Errorf("%s has no bin/switch-to-configuration", system)
	}
	if isExecutable(wrapper) {
		loc := profile
		if action == agent.ActionDryActivate {
			loc = system
		}
		return activation{
			argv: []string{filepath.Join(loc, WrapperName)},
			env: []string{"PROFILE=" + loc, boolEnv("DRY_ACTIVATE", action == agent.ActionDryActivate),
				boolEnv("BOOT", action == agent.ActionBoot), boolEnv("TEST", false)},
			dir: loc,
		}, nil
	}
	if isExecutable(stc) {
		return activation{argv: []string{stc, string(action)}, dir: "/"}, nil
	}
	return activation{}, fmt.Errorf("%s has neither %s nor bin/switch-to-configuration: nothing to activate", system, WrapperName)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

var errActivationTimeout = errors.New("activation timeout")

type activationOutcome struct {
	code     int   // exit status; -1 when it did not run to its end
	err      error // could not start
	timedOut bool
	stopped  bool
}

func (o activationOutcome) exitCode() *int {
	if o.code < 0 {
		return nil
	}
	c := o.code
	return &c
}

// activate runs act with its output as `log` events. After the activation
// timeout its whole process group is killed.
func (d *deploy) activate(ctx context.Context, act activation) activationOutcome {
	d.log.emit(agent.Event{Type: agent.EventActivating, Argv: act.argv})
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := d.r.Clock.After(d.req.ActivationTimeout.D())
	go func() {
		select {
		case <-timer:
			cancel(errActivationTimeout)
		case <-actx.Done():
		}
	}()
	stdout := &lineWriter{log: d.log, stream: "stdout"}
	stderr := &lineWriter{log: d.log, stream: "stderr"}
	code, err := d.r.Exec.Run(actx, Command{
		Argv:   act.argv,
		Env:    withEnv(d.r.Env, act.env...),
		Dir:    act.dir,
		Stdout: stdout,
		Stderr: stderr,
	})
	stdout.flush()
	stderr.flush()
	if err == nil {
		return activationOutcome{code: code}
	}
	switch {
	case errors.Is(context.Cause(actx), errActivationTimeout):
		return activationOutcome{code: -1, timedOut: true, err: err}
	case ctx.Err() != nil:
		return activationOutcome{code: -1, stopped: true, err: err}
	}
	return activationOutcome{code: -1, err: err}
}
