package spec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// MaxFileSize is the largest spec file Load and Parse accept, in bytes.
const MaxFileSize = 1 << 20

// Stdin is the path that makes Load read standard input, and StdinName the
// file name its errors and bottles' Source show.
const (
	Stdin     = "-"
	StdinName = "<stdin>"
)

// Load reads, decodes and validates the bottles of every path: a file, a
// directory (its *.yaml and *.yml files, not recursively, sorted by name) or
// Stdin. It returns the bottles, with defaults applied, in the order read.
// On any problem it returns no bottles and every problem of every file as
// *FieldError values joined by errors.Join; that includes bottle names
// repeated across files.
//
// Load also checks each volume's host directory on the host: it must be a
// directory, and neither hold nor lie under a container engine's socket,
// state or keys or the kernel's interfaces; one that is or holds /etc, /usr
// or the user's home directory needs allowSensitive (see
// SensitiveVolumes). A writable one may not hold the bottle's spec file,
// secret files, files' sources, credentials' value files or trust files,
// and no host directory may lie inside a writable one of any bottle loaded
// with it. It sets each host directory's Volume.HostPath.
func Load(paths []string, stdin io.Reader) ([]Bottle, error) {
	// Resolved only for a spec with host directories: most have none.
	return load(paths, stdin, sync.OnceValue(func() *hostEnv { return newHostEnv(userHome(), os.Getenv("DOCKER_HOST")) }))
}

// LoadDeclared is Load without the checks of host directories, which stay
// with an empty HostPath: a bottle can be destroyed after a directory it
// mounted was removed.
func LoadDeclared(paths []string, stdin io.Reader) ([]Bottle, error) {
	return load(paths, stdin, nil)
}

// load is Load, which checks host directories against host unless it is
// nil.
func load(paths []string, stdin io.Reader, host func() *hostEnv) ([]Bottle, error) {
	if len(paths) == 0 {
		return nil, errors.New("no spec files given")
	}
	var (
		docs     []*document
		errs     []*FieldError
		order    = map[string]int{}
		stdinUse int
	)
	rank := func(file string) {
		if _, ok := order[file]; !ok {
			order[file] = len(order)
		}
	}
	for _, path := range paths {
		rank(path)
		files, err := expand(path)
		if err != nil {
			errs = append(errs, err)
		}
		for _, file := range files {
			name, data, err := read(file, stdin, &stdinUse)
			rank(name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ds, es := parse(name, data)
			if host != nil {
				for _, d := range ds {
					if !slices.ContainsFunc(d.bottle.Spec.Agent.Volumes, func(v Volume) bool { return !v.Named() }) {
						continue
					}
					n := len(d.errs)
					d.checkHost(host()) // after validation: it skips volumes with errors
					es = append(es, d.errs[n:]...)
				}
			}
			docs, errs = append(docs, ds...), append(errs, es...)
		}
	}
	if host != nil {
		errs = append(errs, nestedDirs(docs)...)
	}
	errs = append(errs, duplicateNames(docs)...)
	if len(errs) > 0 {
		return nil, join(errs, order)
	}
	return bottles(docs), nil
}

// Parse decodes and validates the bottles of one file's contents, named file
// in errors and in each bottle's Source. Like Load, it returns either bottles
// with defaults applied or every problem; like LoadDeclared, it leaves host
// directories unchecked.
func Parse(file string, data []byte) ([]Bottle, error) {
	docs, errs := parse(file, data)
	errs = append(errs, duplicateNames(docs)...)
	if len(errs) > 0 {
		return nil, join(errs, nil)
	}
	return bottles(docs), nil
}

// expand lists the spec files a path names.
func expand(path string) ([]string, *FieldError) {
	if path == Stdin {
		return []string{path}, nil
	}
	if fi, err := os.Stat(path); err != nil {
		return nil, ioError(path, err)
	} else if !fi.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, ioError(path, err)
	}
	var files []string
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			files = append(files, filepath.Join(path, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, &FieldError{File: path, Msg: "directory has no *.yaml or *.yml files"}
	}
	return files, nil
}

// read returns the name and contents of a file, or of stdin for Stdin,
// refusing more than MaxFileSize bytes.
func read(file string, stdin io.Reader, stdinUse *int) (string, []byte, *FieldError) {
	r := stdin
	if file == Stdin {
		file = StdinName
		if *stdinUse++; *stdinUse > 1 {
			return file, nil, &FieldError{File: file, Msg: fmt.Sprintf("standard input (%q) can be read only once", Stdin)}
		}
		if stdin == nil {
			return file, nil, &FieldError{File: file, Msg: "no standard input to read"}
		}
	} else {
		f, err := os.Open(file)
		if err != nil {
			return file, nil, ioError(file, err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return file, nil, ioError(file, err)
	}
	return file, data, nil // parse refuses more than MaxFileSize
}

// ioError names the file once, not again inside the message.
func ioError(file string, err error) *FieldError {
	msg := err.Error()
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		msg = pe.Err.Error()
	}
	return &FieldError{File: file, Msg: msg, Err: err}
}

// duplicateNames reports each bottle whose name an earlier one has.
func duplicateNames(docs []*document) []*FieldError {
	var errs []*FieldError
	first := map[string]*document{}
	for _, d := range docs {
		name := d.bottle.Metadata.Name
		if name == "" {
			continue
		}
		prev, dup := first[name]
		if !dup {
			first[name] = d
			continue
		}
		n, _ := d.locate("metadata.name", false)
		at, _ := prev.locate("metadata.name", false)
		errs = append(errs, &FieldError{File: d.file, Line: n.Line, Column: n.Column, Field: "metadata.name",
			Msg: fmt.Sprintf("duplicate bottle name %s (first defined at %s:%d)", quote(name), prev.file, at.Line)})
	}
	return errs
}

func bottles(docs []*document) []Bottle {
	out := make([]Bottle, len(docs))
	for i, d := range docs {
		out[i] = d.bottle
		out[i].Default()
	}
	return out
}
