package spec

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// document is one decoded YAML document with what is needed to point
// validation errors at their nodes.
type document struct {
	file   string
	bottle Bottle
	root   *yaml.Node
	nodes  map[string]entry // by field path; "" is the root
	bad    []string         // field paths whose nodes did not fit their type
	errs   []*FieldError
}

// entry is the key and the value node of a field; key is nil for the root
// and list elements.
type entry struct{ key, val *yaml.Node }

// parse decodes and validates every document of one file. It does not apply
// defaults or compare names across documents.
func parse(file string, data []byte) (docs []*document, errs []*FieldError) {
	defer func() { // yaml.v3 is not known to panic, but input is untrusted
		if r := recover(); r != nil {
			docs, errs = nil, []*FieldError{{File: file, Line: 1, Column: 1, Msg: fmt.Sprintf("internal: %v", r)}}
		}
	}()
	if len(data) > MaxFileSize {
		return nil, []*FieldError{{File: file, Msg: fmt.Sprintf("file is larger than the limit of %d bytes (1 MiB)", MaxFileSize)}}
	}
	if e := checkText(file, data); e != nil {
		return nil, []*FieldError{e}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, syntaxError(file, data, err))
			break
		}
		if len(n.Content) == 0 || isNull(n.Content[0]) {
			continue // an empty document, such as after a trailing ---
		}
		d := decodeDocument(file, &n)
		d.validate()
		errs = append(errs, d.errs...)
		docs = append(docs, d)
	}
	if len(docs) == 0 && len(errs) == 0 {
		errs = append(errs, &FieldError{File: file, Line: 1, Column: 1, Msg: "no bottle in file (it is empty or holds only comments)"})
	}
	return docs, errs
}

// decodeDocument checks the document against Bottle, recording positioned
// errors, then decodes the parts that fit.
func decodeDocument(file string, doc *yaml.Node) *document {
	d := &document{file: file, root: doc.Content[0], nodes: map[string]entry{}}
	d.bottle.Source = Source{File: file, Line: doc.Line}
	if _, at, msg := expansion(d.root, MaxNodes); at != nil {
		d.errorf(at, "", "%s", msg)
		d.bad = append(d.bad, "") // nothing was decoded: validation has nothing to say
		return d
	}
	if n := d.walk(nil, d.root, reflect.TypeFor[Bottle](), ""); n != nil {
		if err := n.Decode(&d.bottle); err != nil { // walk normalized n, so this is a bug
			d.errorf(d.root, "", "internal: decode: %v", err)
		}
	}
	d.bottle.Source = Source{File: file, Line: doc.Line}
	return d
}

// MaxNodes bounds the nodes of one document, counted with every alias
// expanded: a few anchors can otherwise stand for billions of nodes (the
// "billion laughs").
const MaxNodes = 100_000

// expansion walks the document under n as a consumer that expands aliases
// would, and stops at the first problem: an alias inside the node its
// anchor marks (it would expand forever), or more than limit nodes. It
// returns how many nodes it visited and, on a problem, the node to blame
// and what is wrong. The node is the alias of the cycle, or the outermost
// alias being expanded when the count passed the limit: where the document
// asks for the expansion.
func expansion(n *yaml.Node, limit int) (count int, at *yaml.Node, msg string) {
	open := map[*yaml.Node]bool{} // the alias targets being expanded
	var visit func(n, alias *yaml.Node) bool
	visit = func(n, alias *yaml.Node) bool {
		count++ // bounds the depth of the recursion too
		if count > limit {
			at = cmp.Or(alias, n)
			msg = fmt.Sprintf("too many nodes after expanding aliases (more than %d): "+
				"a bottle needs far fewer; check the anchors (&) and aliases (*) this one expands", limit)
			return false
		}
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			if open[n.Alias] {
				at, msg = n, fmt.Sprintf("alias *%s is inside the node its anchor marks, so it would expand forever", n.Value)
				return false
			}
			open[n.Alias] = true
			defer delete(open, n.Alias)
			return visit(n.Alias, cmp.Or(alias, n))
		}
		for _, c := range n.Content {
			if !visit(c, alias) {
				return false
			}
		}
		return true
	}
	visit(n, nil)
	return count, at, msg
}

func (d *document) errorf(n *yaml.Node, field, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.file, Line: n.Line, Column: n.Column, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// kinds maps the kinds of Go types in Bottle to the YAML nodes they decode from.
var kinds = map[reflect.Kind]struct {
	node yaml.Kind
	name string
}{
	reflect.String: {yaml.ScalarNode, "a string"},
	reflect.Int:    {yaml.ScalarNode, "a whole number"},
	reflect.Bool:   {yaml.ScalarNode, "true or false"},
	reflect.Slice:  {yaml.SequenceNode, "a list"},
	reflect.Map:    {yaml.MappingNode, "a mapping"},
	reflect.Struct: {yaml.MappingNode, "a mapping"},
}

// walk checks n, found at path under key, against t. It returns a normalized
// copy that Node.Decode turns into a t without error (plain !!str scalars,
// no aliases, only known keys), or nil after recording why n does not fit.
func (d *document) walk(key, n *yaml.Node, t reflect.Type, path string) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.nodes[path] = entry{key, n}
	if isNull(n) {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
	}
	if t == reflect.TypeFor[Volume]() && n.Kind == yaml.ScalarNode {
		if n = d.shortVolume(n, path); n == nil {
			d.bad = append(d.bad, path)
			return nil
		}
	}
	if want := kinds[t.Kind()]; n.Kind != want.node {
		d.errorf(n, path, "expected %s, got %s", want.name, describe(n))
		d.bad = append(d.bad, path)
		return nil
	}
	out := &yaml.Node{Kind: n.Kind, Line: n.Line, Column: n.Column}
	switch t.Kind() {
	case reflect.String:
		if tag := n.ShortTag(); !strings.HasPrefix(tag, "!!") || tag == "!!binary" {
			d.errorf(n, path, "unsupported tag %s: write a plain string", quote(tag))
			d.bad = append(d.bad, path)
			return nil
		}
		out.Tag, out.Value = "!!str", n.Value
	case reflect.Int:
		var v int
		if n.ShortTag() != "!!int" || n.Decode(&v) != nil || v < 0 {
			d.errorf(n, path, "expected a whole number, got %s", describe(n))
			d.bad = append(d.bad, path)
			return nil
		}
		out.Tag, out.Value = "!!int", strconv.Itoa(v)
	case reflect.Bool:
		var v bool
		// yaml.v3 decodes YAML 1.1's yes, no, on and off into a bool; only
		// true and false (the !!bool tag) are accepted here.
		if n.ShortTag() != "!!bool" || n.Decode(&v) != nil {
			d.errorf(n, path, "expected true or false, got %s", describe(n))
			d.bad = append(d.bad, path)
			return nil
		}
		out.Tag, out.Value = "!!bool", strconv.FormatBool(v)
	case reflect.Slice:
		out.Tag = "!!seq"
		for i, c := range n.Content {
			v := d.walk(nil, c, t.Elem(), path+"["+strconv.Itoa(i)+"]")
			switch isStruct := t.Elem().Kind() == reflect.Struct; {
			case v == nil && !isStruct:
				v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str"} // keep the indexes of the others
			case isStruct && (v == nil || isNull(v)):
				// Node.Decode drops a null element of a list of structs:
				// an empty mapping keeps the indexes, and leaves the
				// element's required fields for validation to point at.
				v = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: c.Line, Column: c.Column}
			}
			out.Content = append(out.Content, v)
		}
	case reflect.Map, reflect.Struct:
		out.Tag = "!!map"
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			name, ok := d.key(k, path, seen)
			if !ok {
				continue
			}
			ft, p := field(t, name), strings.TrimPrefix(path+"."+name, ".")
			if ft == nil {
				d.errorf(k, p, "unknown field (%s)", suggest(name, fieldNames(t)))
				continue
			}
			if nv := d.walk(k, v, ft, p); nv != nil {
				out.Content = append(out.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}, nv)
			}
		}
	}
	return out
}

// key checks a mapping key and returns its name.
func (d *document) key(k *yaml.Node, path string, seen map[string]*yaml.Node) (string, bool) {
	r := k
	if r.Kind == yaml.AliasNode && r.Alias != nil {
		r = r.Alias
	}
	switch {
	case r.Kind != yaml.ScalarNode:
		d.errorf(k, path, "expected a string key, got %s", describe(r))
		return "", false
	case r.ShortTag() == "!!merge":
		d.errorf(k, path, "merge keys (<<) are not supported")
		return "", false
	case seen[r.Value] != nil:
		d.errorf(k, strings.TrimPrefix(path+"."+r.Value, "."), "duplicate key (first defined at line %d)", seen[r.Value].Line)
		return "", false
	}
	seen[r.Value] = k
	return r.Value, true
}

// field returns the type of the value under key name in a t: the element
// type of a map, or the type of the struct field with that yaml name (nil
// for none).
func field(t reflect.Type, name string) reflect.Type {
	if t.Kind() == reflect.Map {
		return t.Elem()
	}
	for f := range t.Fields() {
		// A field YAML ignores (yaml:"-", unexported, such as Source and
		// Agent.Secrets) has the name "", which no key may reach.
		if n := yamlName(f); n != "" && n == name {
			return f.Type
		}
	}
	return nil
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		if n := yamlName(f); n != "" {
			names = append(names, n)
		}
	}
	return names
}

// yamlName is the key of f in YAML, or "" for a field YAML ignores.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// describe names the YAML type of n for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "null"
	}
	return "a string"
}

// suggest names the known field closest to name, or lists them all.
func suggest(name string, known []string) string {
	best, dist := "", 3
	for _, k := range known {
		if d := levenshtein(strings.ToLower(name), strings.ToLower(k)); d < dist {
			best, dist = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	return "known fields: " + strings.Join(known, ", ")
}

func levenshtein(a, b string) int {
	s, t := []rune(a), []rune(b)
	prev, cur := make([]int, len(t)+1), make([]int, len(t)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := range s {
		cur[0] = i + 1
		for j := range t {
			cost := 1
			if s[i] == t[j] {
				cost = 0
			}
			cur[j+1] = min(prev[j+1]+1, cur[j]+1, prev[j]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(t)]
}

var (
	syntaxLine    = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)
	unknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
	// parserProblems are the messages of yaml.v3's parser (not its scanner),
	// whose line numbers it reports 0-based: the line where the construct
	// the problem is in begins.
	parserProblems = []string{"did not find expected <", "did not find expected node content",
		"did not find expected '-' indicator", "did not find expected key", "did not find expected ','",
		"found undefined tag handle", "found duplicate %", "found incompatible YAML document"}
)

// syntaxError positions a yaml.v3 error, which at best knows a line. It
// leaves the line out for errors on the first line, and for unknown anchors
// at any line.
func syntaxError(file string, data []byte, err error) *FieldError {
	e := &FieldError{File: file, Line: 1, Column: 1, Msg: err.Error(), Err: err}
	if m := syntaxLine.FindStringSubmatch(e.Msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "yaml: " + m[2]
		for _, p := range parserProblems {
			if strings.HasPrefix(m[2], p) {
				e.Line++
				break
			}
		}
	} else if m := unknownAnchor.FindStringSubmatch(e.Msg); m != nil {
		for off := 0; ; off++ {
			i := bytes.Index(data[off:], []byte("*"+m[1]))
			if i < 0 {
				break
			}
			off += i
			if end := off + 1 + len(m[1]); end == len(data) || bytes.IndexByte([]byte(" \t\r\n,]}"), data[end]) >= 0 {
				e.Line, e.Column = position(data[:off])
				break
			}
		}
	}
	return e
}

// checkText finds what yaml.v3 would reject without saying where: bytes that
// are not UTF-8 and control characters.
func checkText(file string, data []byte) *FieldError {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		msg := ""
		switch {
		case r == utf8.RuneError && size == 1:
			msg = "yaml: invalid UTF-8 (the file must be UTF-8 encoded)"
		case !(r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0x7e || r == 0x85 ||
			r >= 0xa0 && r <= 0xd7ff || r >= 0xe000 && r <= 0xfffd || r >= 0x10000):
			msg = fmt.Sprintf("yaml: control character %U is not allowed", r)
		}
		if msg != "" {
			line, col := position(data[:i])
			return &FieldError{File: file, Line: line, Column: col, Msg: msg}
		}
		i += size
	}
	return nil
}

// position returns the 1-based line and column just after prefix.
func position(prefix []byte) (line, col int) {
	nl := bytes.LastIndexByte(prefix, '\n')
	return bytes.Count(prefix, []byte("\n")) + 1, utf8.RuneCount(prefix[nl+1:]) + 1
}
