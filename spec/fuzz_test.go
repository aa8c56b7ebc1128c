package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	more, _ := filepath.Glob("testdata/dup/*.y*ml")
	examples, _ := filepath.Glob("../examples/*.yaml")
	for _, file := range append(append(files, more...), examples...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const file = "fuzz.yaml"
		bottles, err := Parse(file, data)
		if err == nil {
			if len(bottles) == 0 {
				t.Fatal("no bottles and no error")
			}
			for _, b := range bottles {
				if b.Source.File != file || b.Source.Line < 1 {
					t.Errorf("Source = %+v", b.Source)
				}
				again := b
				again.Default()
				if !reflect.DeepEqual(again, b) {
					t.Errorf("Default changed a defaulted bottle: %+v", b)
				}
				if err := bottleValidator().Struct(&b); err != nil {
					t.Errorf("defaulted bottle is invalid: %v", err)
				}
			}
			return
		}
		if bottles != nil {
			t.Errorf("bottles returned with an error")
		}
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var fe *FieldError
			if !errors.As(e, &fe) || fe.Msg == "" {
				t.Errorf("error %q (%T) is not a *FieldError with a message", e, e)
			}
			if msg := e.Error(); !strings.HasPrefix(msg, file+":") || strings.Contains(msg, "internal:") {
				t.Errorf("bad error message: %q", msg)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("testdata/valid-full.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse("valid-full.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
