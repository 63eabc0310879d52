package fleet

import (
	"fmt"
	"strings"
	"time"
)

// Overrides is one level of deploy settings in which only some keys are
// set: what the command line or the Action inputs give on top of the
// configuration files. SSHOpts are appended after every other level.
type Overrides struct {
	SSHUser           *string
	User              *string
	SSHOpts           []string
	FastConnection    *bool
	AutoRollback      *bool
	MagicRollback     *bool
	ConfirmTimeout    *time.Duration
	ActivationTimeout *time.Duration
	TempPath          *string
	RemoteBuild       *bool
	InteractiveSudo   *bool
	Sudo              *string
}

// fileSettings is one level of settings as a configuration file writes
// it, in both schemas: tether.toml (snake_case keys) and deploy.nodes
// (camelCase keys). They differ in how a timeout is written, D: a
// duration or seconds in tether.toml, whole seconds in deploy.nodes.
// Pointers tell "not written" from a zero value.
type fileSettings[D any] struct {
	SSHUser           *string  `toml:"ssh_user" json:"sshUser"`
	User              *string  `toml:"user" json:"user"`
	SSHOpts           []string `toml:"ssh_opts" json:"sshOpts"`
	FastConnection    *bool    `toml:"fast_connection" json:"fastConnection"`
	AutoRollback      *bool    `toml:"auto_rollback" json:"autoRollback"`
	MagicRollback     *bool    `toml:"magic_rollback" json:"magicRollback"`
	ConfirmTimeout    *D       `toml:"confirm_timeout" json:"confirmTimeout"`
	ActivationTimeout *D       `toml:"activation_timeout" json:"activationTimeout"`
	TempPath          *string  `toml:"temp_path" json:"tempPath"`
	RemoteBuild       *bool    `toml:"remote_build" json:"remoteBuild"`
	InteractiveSudo   *bool    `toml:"interactive_sudo" json:"interactiveSudo"`
	Sudo              *string  `toml:"sudo" json:"sudo"`
}

// overrides is the level as Overrides, each timeout converted by timeout
// (given its schema key, for messages), the confirmation's first.
func (f *fileSettings[D]) overrides(timeout func(key string, v *D) *time.Duration) Overrides {
	return Overrides{
		SSHUser:           f.SSHUser,
		User:              f.User,
		SSHOpts:           f.SSHOpts,
		FastConnection:    f.FastConnection,
		AutoRollback:      f.AutoRollback,
		MagicRollback:     f.MagicRollback,
		ConfirmTimeout:    timeout(KeyConfirmTimeout, f.ConfirmTimeout),
		ActivationTimeout: timeout(KeyActivationTimeout, f.ActivationTimeout),
		TempPath:          f.TempPath,
		RemoteBuild:       f.RemoteBuild,
		InteractiveSudo:   f.InteractiveSudo,
		Sudo:              f.Sudo,
	}
}

// layer is one level of the inheritance chain together with where each of
// its keys was written.
type layer struct {
	set Overrides
	at  map[string]Origin
}

// settingSpec ties a schema key to its tether.toml spelling and its field,
// so layers are merged, validated and named by one table.
type settingSpec struct {
	key     string // deploy.nodes spelling
	tomlKey string
}

var settingSpecs = []settingSpec{
	{KeySSHUser, "ssh_user"},
	{KeyUser, "user"},
	{KeySSHOpts, "ssh_opts"},
	{KeyFastConnection, "fast_connection"},
	{KeyAutoRollback, "auto_rollback"},
	{KeyMagicRollback, "magic_rollback"},
	{KeyConfirmTimeout, "confirm_timeout"},
	{KeyActivationTimeout, "activation_timeout"},
	{KeyTempPath, "temp_path"},
	{KeyRemoteBuild, "remote_build"},
	{KeyInteractiveSudo, "interactive_sudo"},
	{KeySudo, "sudo"},
}

// defaultSettings are the values nobody set. The SSH user defaults to the
// user running tether, as with the schema's original tool; the profile
// user is filled in later from the resolved SSH user.
func defaultSettings(localUser string) Settings {
	def := Origin{Source: OriginDefault}
	s := Settings{
		SSHUser:           localUser,
		AutoRollback:      true,
		MagicRollback:     true,
		ConfirmTimeout:    DefaultConfirmTimeout,
		ActivationTimeout: DefaultActivationTimeout,
		TempPath:          DefaultTempPath,
		Sudo:              DefaultSudo,
		Origins:           map[string]Origin{},
	}
	for _, sp := range settingSpecs {
		s.Origins[sp.key] = def
	}
	return s
}

// apply lays l over s: set keys replace, sshOpts append.
func (s *Settings) apply(l layer) {
	o := l.set
	take := func(key string) { s.Origins[key] = l.at[key] }
	if len(o.SSHOpts) > 0 {
		s.SSHOpts = append(append([]string(nil), s.SSHOpts...), o.SSHOpts...)
		take(KeySSHOpts)
	}
	override(&s.SSHUser, o.SSHUser, KeySSHUser, take)
	override(&s.User, o.User, KeyUser, take)
	override(&s.FastConnection, o.FastConnection, KeyFastConnection, take)
	override(&s.AutoRollback, o.AutoRollback, KeyAutoRollback, take)
	override(&s.MagicRollback, o.MagicRollback, KeyMagicRollback, take)
	override(&s.ConfirmTimeout, o.ConfirmTimeout, KeyConfirmTimeout, take)
	override(&s.ActivationTimeout, o.ActivationTimeout, KeyActivationTimeout, take)
	override(&s.TempPath, o.TempPath, KeyTempPath, take)
	override(&s.RemoteBuild, o.RemoteBuild, KeyRemoteBuild, take)
	override(&s.InteractiveSudo, o.InteractiveSudo, KeyInteractiveSudo, take)
	override(&s.Sudo, o.Sudo, KeySudo, take)
}

// override sets *dst from a layer's value when the layer sets it, and
// records where it came from.
func override[T any](dst *T, v *T, key string, take func(string)) {
	if v != nil {
		*dst = *v
		take(key)
	}
}

func (s Settings) clone() Settings {
	c := s
	c.SSHOpts = append([]string(nil), s.SSHOpts...)
	c.Origins = make(map[string]Origin, len(s.Origins))
	for k, v := range s.Origins {
		c.Origins[k] = v
	}
	return c
}

// validateLayer checks the values of one level where they were written;
// name maps a schema key to its spelling in that source.
func validateLayer(l layer, node string, name func(key string) string, errs *errorList) {
	o := l.set
	bad := func(key string, err error) { errs.add(l.at[key], node, name(key), "%v", err) }
	if o.SSHUser != nil {
		if err := checkUser(*o.SSHUser); err != nil {
			bad(KeySSHUser, err)
		}
	}
	if o.User != nil {
		if err := checkUser(*o.User); err != nil {
			bad(KeyUser, err)
		}
	}
	for _, opt := range o.SSHOpts {
		if opt == "" || strings.ContainsAny(opt, "\x00\n\r") {
			bad(KeySSHOpts, fmt.Errorf("invalid ssh option %q", opt))
		}
	}
	for _, d := range []struct {
		key string
		v   *time.Duration
	}{{KeyConfirmTimeout, o.ConfirmTimeout}, {KeyActivationTimeout, o.ActivationTimeout}} {
		if d.v != nil && *d.v <= 0 {
			bad(d.key, fmt.Errorf("must be positive, not %v", *d.v))
		}
	}
	if o.TempPath != nil {
		if err := checkAbsPath(*o.TempPath); err != nil {
			bad(KeyTempPath, err)
		}
	}
	if o.Sudo != nil {
		if strings.TrimSpace(*o.Sudo) == "" || hasControl(*o.Sudo) {
			bad(KeySudo, fmt.Errorf("invalid sudo command %q", *o.Sudo))
		}
	}
}

// overridesLayer turns the caller's overrides into the topmost level.
func overridesLayer(o Overrides) layer {
	at := map[string]Origin{}
	for _, sp := range settingSpecs {
		at[sp.key] = Origin{Source: OriginOverride}
	}
	return layer{set: o, at: at}
}
