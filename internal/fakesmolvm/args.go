package main

import (
	"fmt"
	"strings"
)

// opt describes one option of a subcommand, the way clap declares it.
type opt struct {
	long     string // without the leading "--"
	short    byte   // 0 when the option has no short form
	value    bool   // takes a value
	multi    bool   // may be repeated
	optional bool   // the value may be left out (clap num_args = 0..=1)
	required bool
	meta     string             // value name shown in messages, e.g. "NAME"
	check    func(string) error // clap value_parser: an error is a usage error
}

// display is the option as clap names it in messages: "--name <NAME>".
func (o opt) display() string {
	s := "--" + o.long
	if o.long == "" {
		s = "-" + string(o.short)
	}
	if o.value {
		s += " <" + o.meta + ">"
	}
	return s
}

// cmdSpec describes the arguments of one subcommand.
type cmdSpec struct {
	usage    string // the text after "Usage: "
	opts     []opt
	pos      []string // positional value names, in order
	required int      // how many positionals are required
	// trailing names a trailing variable argument ("COMMAND"); "" for none.
	trailing string
	// trailingLast means the trailing argument is only taken after "--"
	// (clap last = true); otherwise the first free value starts it
	// (clap trailing_var_arg).
	trailingLast     bool
	trailingRequired bool
}

// parsed holds what the command line gave.
type parsed struct {
	vals     map[string][]string // values by long name
	set      map[string]bool     // options given, by long name
	pos      []string
	trail    []string
	dashdash bool // "--" was seen
	help     bool
}

func (p *parsed) str(long string) string {
	v := p.vals[long]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func (p *parsed) has(long string) bool { return p.set[long] }

// usageError is a clap-style usage error: printed as is, exit 2.
func usageError(spec *cmdSpec, msg string, tips ...string) error {
	var b strings.Builder
	b.WriteString("error: " + msg + "\n")
	for _, t := range tips {
		b.WriteString("\n  tip: " + t + "\n")
	}
	if spec != nil {
		b.WriteString("\nUsage: " + spec.usage + "\n")
	}
	b.WriteString("\nFor more information, try '--help'.")
	return &exitError{code: 2, msg: b.String()}
}

func (s *cmdSpec) findLong(name string) *opt {
	for i := range s.opts {
		if s.opts[i].long == name {
			return &s.opts[i]
		}
	}
	return nil
}

func (s *cmdSpec) findShort(c byte) *opt {
	for i := range s.opts {
		if s.opts[i].short == c {
			return &s.opts[i]
		}
	}
	return nil
}

// key is the name a parsed option is stored under.
func (o *opt) key() string {
	if o.long != "" {
		return o.long
	}
	return string(o.short)
}

// looksLikeFlag reports whether clap would read arg as an option rather
// than a value.
func looksLikeFlag(arg string) bool {
	return strings.HasPrefix(arg, "-") && arg != "-"
}

func unexpected(spec *cmdSpec, arg string) error {
	if looksLikeFlag(arg) {
		return usageError(spec, fmt.Sprintf("unexpected argument '%s' found", arg),
			fmt.Sprintf("to pass '%s' as a value, use '-- %s'", arg, arg))
	}
	return usageError(spec, fmt.Sprintf("unexpected argument '%s' found", arg))
}

// parse reads args against spec with clap's rules: "--long value",
// "--long=value", "-s value", "-svalue", "-s=value", clustered boolean
// short options, "--" ending the options.
func (s *cmdSpec) parse(args []string) (*parsed, error) {
	p := &parsed{vals: map[string][]string{}, set: map[string]bool{}}
	record := func(o *opt, v string, hasValue bool) error {
		k := o.key()
		if p.set[k] && !o.multi {
			return usageError(s, fmt.Sprintf("the argument '%s' cannot be used multiple times", o.display()))
		}
		p.set[k] = true
		if !o.value {
			return nil
		}
		if hasValue && o.check != nil {
			if err := o.check(v); err != nil {
				return usageError(s, fmt.Sprintf("invalid value '%s' for '%s': %v", v, o.display(), err))
			}
		}
		if hasValue {
			p.vals[k] = append(p.vals[k], v)
		}
		return nil
	}
	// takeValue finds the value of o at args[i] (already past the option
	// itself); it returns the new index.
	takeValue := func(o *opt, i int) (string, bool, int, error) {
		if i < len(args) && !looksLikeFlag(args[i]) && !(args[i] == "--") {
			return args[i], true, i + 1, nil
		}
		if o.optional {
			return "", false, i, nil
		}
		return "", false, i, usageError(s, fmt.Sprintf("a value is required for '%s' but none was supplied", o.display()))
	}

	i := 0
	for i < len(args) {
		a := args[i]
		switch {
		case p.dashdash:
			if s.trailing != "" {
				p.trail = append(p.trail, args[i:]...)
				i = len(args)
				continue
			}
			if len(p.pos) >= len(s.pos) {
				return nil, unexpected(s, a)
			}
			p.pos = append(p.pos, a)
			i++
		case a == "--":
			p.dashdash = true
			i++
		case a == "--help" || a == "-h":
			p.help = true
			i++
		case strings.HasPrefix(a, "--"):
			name, val, hasEq := strings.Cut(a[2:], "=")
			o := s.findLong(name)
			if o == nil {
				return nil, unexpected(s, "--"+name)
			}
			i++
			if !o.value {
				if hasEq {
					return nil, usageError(s, fmt.Sprintf("unexpected value '%s' for '%s' found; no more were expected", val, o.display()))
				}
				if err := record(o, "", false); err != nil {
					return nil, err
				}
				continue
			}
			has := hasEq
			if !hasEq {
				var err error
				val, has, i, err = takeValue(o, i)
				if err != nil {
					return nil, err
				}
			}
			if err := record(o, val, has); err != nil {
				return nil, err
			}
		case looksLikeFlag(a):
			i++
			for j := 1; j < len(a); j++ {
				o := s.findShort(a[j])
				if a[j] == 'h' {
					p.help = true
					continue
				}
				if o == nil {
					return nil, unexpected(s, "-"+string(a[j]))
				}
				if !o.value {
					if err := record(o, "", false); err != nil {
						return nil, err
					}
					continue
				}
				val, has := strings.TrimPrefix(a[j+1:], "="), true
				if a[j+1:] == "" {
					var err error
					val, has, i, err = takeValue(o, i)
					if err != nil {
						return nil, err
					}
				}
				if err := record(o, val, has); err != nil {
					return nil, err
				}
				break
			}
		default:
			switch {
			case len(p.pos) < len(s.pos):
				p.pos = append(p.pos, a)
				i++
			case s.trailing != "" && !s.trailingLast:
				p.trail = append(p.trail, args[i:]...)
				i = len(args)
			default:
				return nil, unexpected(s, a)
			}
		}
	}
	if p.help {
		return p, nil
	}
	var missing []string
	for _, o := range s.opts {
		if o.required && !p.set[o.key()] {
			missing = append(missing, o.display())
		}
	}
	for k := len(p.pos); k < s.required; k++ {
		missing = append(missing, "<"+s.pos[k]+">")
	}
	if s.trailingRequired && len(p.trail) == 0 {
		missing = append(missing, "<"+s.trailing+">...")
	}
	if len(missing) > 0 {
		return nil, usageError(s, "the following required arguments were not provided:\n  "+strings.Join(missing, "\n  "))
	}
	return p, nil
}

// conflict is clap's error for two options that exclude each other.
func conflict(spec *cmdSpec, a, b string) error {
	oa, ob := spec.findLong(a), spec.findLong(b)
	return usageError(spec, fmt.Sprintf("the argument '%s' cannot be used with '%s'", oa.display(), ob.display()))
}
