//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
)

// lanHost is the node of the LAN benchmark.
const lanHost = "h01"

// benchLAN updates one node over an unshaped link, where the link no
// longer hides tether's fixed costs, and compares it with the same copy
// and switch typed by hand. Rounds alternate tether and the hand-made
// commands on the same host, which is put back before each side runs:
// running v1, with no path of v2's closure that v1 lacks.
func benchLAN(ctx context.Context, b *bench) (*section, error) {
	rounds := pick(b, 5, 2)
	const ballast = 30 << 20
	s, err := b.startSandboxWith(ctx, testhost.Direct(1), func(c *fixture.Config) {
		fast := true
		hc := c.Hosts[lanHost]
		hc.FastConnection = &fast
		c.Hosts[lanHost] = hc
		c.Ballast = map[string]int64{lanHost: ballast}
	})
	if err != nil {
		return nil, err
	}
	defer s.close()
	b.dropLater(ctx, s, []string{lanHost}, fixture.V1, fixture.V2)
	if _, err := s.prebuild(ctx, []string{lanHost}, fixture.V1, fixture.V2); err != nil {
		return nil, err
	}
	h := s.fleet.Host(lanHost)
	v1, err := s.outPath(ctx, fixture.ProfileAttr(lanHost, fixture.V1))
	if err != nil {
		return nil, err
	}
	v2, err := s.outPath(ctx, fixture.ProfileAttr(lanHost, fixture.V2))
	if err != nil {
		return nil, err
	}
	fresh, err := b.closureDiff(ctx, v2, v1)
	if err != nil {
		return nil, err
	}
	// The node has run tether before: its agent is installed.
	if _, err := s.deploy(ctx, runOpts{}, lanHost); err != nil {
		return nil, err
	}
	hand, err := s.byHand(h)
	if err != nil {
		return nil, err
	}

	var tethers, subst []*tetherRun
	var hands []sideRun
	var nixDefault []time.Duration
	for round := 1; round <= rounds; round++ {
		b.logf("lan: round %d/%d, tether", round, rounds)
		if err := resetHost(ctx, h, v1); err != nil {
			return nil, err
		}
		if err := s.setVariant(fixture.V2, lanHost); err != nil {
			return nil, err
		}
		r, err := s.deploy(ctx, runOpts{}, lanHost)
		if err != nil {
			return nil, err
		}
		if err := expectVariant(h, fixture.V2, v2); err != nil {
			return nil, err
		}
		tethers = append(tethers, r)
		b.showTimeline("lan", r)

		b.logf("lan: round %d/%d, by hand", round, rounds)
		if err := resetHost(ctx, h, v1); err != nil {
			return nil, err
		}
		var hr sideRun
		if hr.copy, err = hand.copy(ctx, v2); err != nil {
			return nil, err
		}
		if hr.set, hr.activate, err = hand.switchTo(ctx, v2); err != nil {
			return nil, err
		}
		hr.total = hr.copy + hr.set + hr.activate
		if err := expectVariant(h, fixture.V2, v2); err != nil {
			return nil, err
		}
		hands = append(hands, hr)

		b.logf("lan: round %d/%d, tether with substitution on and no cache reachable", round, rounds)
		if err := resetHost(ctx, h, v1); err != nil {
			return nil, err
		}
		r, d, err := s.deployUnreachableCache(ctx, h, fresh)
		if err != nil {
			return nil, err
		}
		if err := expectVariant(h, fixture.V2, v2); err != nil {
			return nil, err
		}
		subst = append(subst, r)
		nixDefault = append(nixDefault, d)
	}

	t := newRoundsTable("update v1 → v2 of "+lanHost, rounds)
	row := t.row
	each := func(get func(sideRun) time.Duration) []time.Duration {
		var out []time.Duration
		for _, r := range hands {
			out = append(out, get(r))
		}
		return out
	}
	var walls []time.Duration
	for _, r := range tethers {
		walls = append(walls, r.wall)
	}
	tm := row("tether deploy "+lanHost+" (wall, evaluation to confirmation)", walls)
	row("by hand: nix copy --to ssh://", each(func(r sideRun) time.Duration { return r.copy }))
	row("by hand: ssh nix-env --set", each(func(r sideRun) time.Duration { return r.set }))
	row("by hand: ssh switch-to-configuration switch", each(func(r sideRun) time.Duration { return r.activate }))
	hm := row("by hand: the three", each(func(r sideRun) time.Duration { return r.total }))
	t.summary("tether / by hand (medians)", ratio(tm, hm))
	// Each round's tether run and hand-made run came one after the other,
	// so the machine's load (shared with other work) weighs on both alike.
	paired := []string{"tether / by hand, round by round"}
	var ratios []float64
	for i, r := range tethers {
		q := float64(r.wall) / float64(hands[i].total)
		ratios = append(ratios, q)
		paired = append(paired, fmt.Sprintf("%.2f×", q))
	}
	slices.Sort(ratios)
	pm := ratios[len(ratios)/2]
	if len(ratios)%2 == 0 {
		pm = (ratios[len(ratios)/2-1] + pm) / 2
	}
	t.add(append(paired, fmt.Sprintf("%.2f×", pm))...)
	copyOf := func(runs []*tetherRun) []time.Duration {
		var out []time.Duration
		for _, r := range runs {
			res, _ := r.result(lanHost)
			out = append(out, time.Duration(res.Timings.Copy))
		}
		return out
	}
	fastCopy := row("tether's copy (fastConnection: nothing asked of caches)", copyOf(tethers))
	var swalls []time.Duration
	for _, r := range subst {
		swalls = append(swalls, r.wall)
	}
	row("tether deploy "+lanHost+", substitution on, no cache reachable (wall)", swalls)
	substCopy := row("  ↳ its copy", copyOf(subst))
	nd := row("  nix's defaults: nix-store --realise of the missing paths on the node, same caches", nixDefault)

	tl := timelineTable(tethers, lanHost)
	size, _ := b.closureSize(ctx, v2)
	return &section{
		setup: fmt.Sprintf("One direct sandbox host (%s, its own veth from the runner, no shaping), marked fastConnection (no compression, no substitution). "+
			"Each round updates it from v1 to v2, whose closure (%s) holds a new %s incompressible package, once with tether and once by hand, "+
			"the host put back on v1 with v2's new paths deleted before each; %d rounds, median. The agent is installed (the node was deployed once before). "+
			"tether: `tether deploy %s` with magic rollback, from the flake evaluation to the confirmation over a fresh connection. "+
			"By hand, with the OpenSSH client: `nix copy --to ssh://root@… <v2>`, `ssh … nix-env -p %s --set <v2>`, `ssh … <v2>/bin/switch-to-configuration switch` "+
			"(no evaluation: the path is known).",
			lanHost, bytesIEC(size), bytesIEC(ballast), rounds, lanHost, profilePath),
		tables: []*table{t.table, tl},
		goals: []string{
			fmt.Sprintf("tether ≤ 1.2× by hand: %.2f× (median of the rounds' ratios; %s of the medians) — %s", pm, ratio(tm, hm), verdict(pm <= 1.2)),
			fmt.Sprintf("no binary cache reachable from the node costs ≤ ~1 s a deploy: its copy took %s more than with substitution off (nix's own retries: %s) — %s",
				secs(substCopy-fastCopy), secs(nd), verdict(substCopy-fastCopy <= 1200*time.Millisecond)),
		},
		notes: []string{"No cache reachable: the node's nix.conf names one substituter, http://10.99.0.1, which the node has no route to (a home LAN whose DNS or uplink is down, an air-gapped network); " +
			"the node is not marked fastConnection (tether.toml), and `--compress off` keeps the copy comparable. tether asks the caches once with one bounded attempt, then sends.",
			"The second table is tether's own timeline, from the lines of its progress log stamped as they arrived (median over the rounds): " +
				"where its fixed costs go. A step shows when it ended; steps that run at the same time as others overlap."},
	}, nil
}

// deployUnreachableCache deploys the LAN host with substitution on and a
// binary cache the host has no route to, and returns the run and what
// nix's own settings cost for the same paths on the host, measured first.
func (s *sandbox) deployUnreachableCache(ctx context.Context, h *testhost.Host, fresh []string) (*tetherRun, time.Duration, error) {
	conf := filepath.Join(h.Dir, "etc", "nix", "nix.conf")
	base, err := os.ReadFile(conf)
	if err != nil {
		return nil, 0, err
	}
	defer os.WriteFile(conf, base, 0o644)
	if err := os.WriteFile(conf, append(slices.Clone(base), "substituters = http://10.99.0.1\n"...), 0o644); err != nil {
		return nil, 0, err
	}
	toml := filepath.Join(s.dir, "tether.toml")
	if err := os.WriteFile(toml, []byte("[nodes."+lanHost+"]\nfast_connection = false\n"), 0o644); err != nil {
		return nil, 0, err
	}
	defer os.Remove(toml)
	start := time.Now()
	// Fails: no cache has them. The time is the point.
	h.Exec(ctx, append([]string{"nix-store", "--realise", "--ignore-unknown"}, fresh...)...)
	nixDefault := time.Since(start)
	r, err := s.deploy(ctx, runOpts{}, "--compress", "off", lanHost)
	if err != nil {
		return nil, 0, err
	}
	if res, _ := r.result(lanHost); res.Copied.CachesUnreachable == "" || !strings.Contains(r.stderr, "binary caches could not be used") {
		return nil, 0, fmt.Errorf("the deploy did not say the node's caches were unreachable: %s", r)
	}
	return r, nixDefault, nil
}

// closureDiff lists the paths of a's closure that b's lacks, on the runner.
func (b *bench) closureDiff(ctx context.Context, a, bPath string) ([]string, error) {
	closure := func(p string) ([]string, error) {
		out, err := b.nix(ctx, "nix-store", "--query", "--requisites", p)
		return strings.Fields(string(out)), err
	}
	ca, err := closure(a)
	if err != nil {
		return nil, err
	}
	cb, err := closure(bPath)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range ca {
		if !slices.Contains(cb, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// resetHost puts a host back on system, with its other generations and
// everything they alone held collected, so the next update copies it
// again.
func resetHost(ctx context.Context, h *testhost.Host, system string) error {
	const script = `set -e
nix-env -p "$1" --set "$2"
"$2"/bin/switch-to-configuration switch >/dev/null
nix-env -p "$1" --delete-generations old >/dev/null 2>&1
nix-store --gc >/dev/null 2>&1`
	if _, err := h.Exec(ctx, "sh", "-c", script, "sh", profilePath, system); err != nil {
		return fmt.Errorf("reset %s: %w", h.Name, err)
	}
	return nil
}

// step is a point of tether's timeline: the first progress line with its
// prefix, and what the time up to it went to.
type step struct {
	prefix string
	what   string
}

// timelineSteps are the lines a single-node deploy logs, in the order they
// come, with what happened before each; a step whose line a run does not
// log (the commit, before two-phase activation) is left out. {node} stands
// for the node's name.
var timelineSteps = []step{
	{"[{node}] connect:", "process start, evaluation of the flake (deploy.nodes → derivations)"},
	{"[{node}] agent:", "SSH connection up (TCP, handshake, auth)"},
	{"[{node}] build: built", "outputs found valid and GC-rooted: nothing to build"},
	{"[{node}] copying", "closure asked locally, missing paths on the node (the agent checked alongside); first bytes sent"},
	{"[{node}] copy: copied", "closure streamed and imported"},
	{"[{node}] activate: activating", "agent started, its log followed, activation begins"},
	{"[{node}] activate: activation finished", "switch-to-configuration ran"},
	{"[{node}] confirm: waiting", "confirmation armed"},
	{"[{node}] confirm: confirmed", "confirmed over a fresh connection"},
	{"[{node}] confirm: committed", "two-phase activation's commit: profile set, boot default made"},
	{"[{node}] done:", "the agent's run ended; result read"},
}

// timelineTable gives, for each step of the runs' timelines, when it came
// (median) and how long after the step before it.
func timelineTable(runs []*tetherRun, node string) *table {
	t := &table{header: []string{"tether's timeline (progress log)", "at (median)", "since the step before", "what the time went to"}}
	var prev time.Duration
	for _, st := range timelineSteps {
		prefix := strings.ReplaceAll(st.prefix, "{node}", node)
		var ats []time.Duration
		for _, r := range runs {
			if at, ok := r.at(prefix); ok {
				ats = append(ats, at)
			}
		}
		if len(ats) == 0 {
			continue
		}
		at := median(ats)
		t.add("`"+prefix+"`", millis(at), millis(at-prev), st.what)
		prev = at
	}
	var walls []time.Duration
	for _, r := range runs {
		walls = append(walls, r.wall)
	}
	t.add("process exit", millis(median(walls)), millis(median(walls)-prev), "summary and JSON report written")
	return t
}
