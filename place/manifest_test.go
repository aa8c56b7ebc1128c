package place

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// secret is the content of every file the tests place: no error may hold it.
const secret = "s3cr3t-content-that-never-shows"

// The JSON the kubernetes provider writes and the bundle reads.
func TestParseContract(t *testing.T) {
	t.Parallel()
	const raw = `{"files":[
		{"path":"/home/agent/.gitconfig","src":"/bottle-files/src/f0","dst":"/home/agent/.gitconfig","mode":384,"uid":1000,"gid":1000,"volume":"/home/agent"},
		{"src":"/bottle-files/src/f1","dst":"/bottle-files/out/f1","mode":420,"uid":0,"gid":0,"volume":""}],
		"chown":[{"path":"/home/agent","uid":1000,"gid":1000}]}`
	got, err := Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := Manifest{
		Files: []File{
			{Path: "/home/agent/.gitconfig", Src: "/bottle-files/src/f0", Dst: "/home/agent/.gitconfig", Mode: 0o600, UID: 1000, GID: 1000, Volume: "/home/agent"},
			{Src: "/bottle-files/src/f1", Dst: "/bottle-files/out/f1", Mode: 0o644},
		},
		Chown: []Chown{{Path: "/home/agent", UID: 1000, GID: 1000}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Parse = %+v\nwant %+v", got, want)
	}
	// And back: what the provider marshals is what the bundle parses.
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := Parse(b); err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("Parse(Marshal) = %+v, %v", again, err)
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	file := func(fields string) string {
		return `{"files":[{"src":"/s/f0","dst":"/v/a","mode":384,"uid":1,"gid":1,"volume":"/v"` + fields + `}]}`
	}
	for _, tc := range []struct {
		name, raw string
		want      []string
	}{
		{"not JSON", `{"files":`, []string{"read the manifest"}},
		{"an unknown field", file(`,"content":"x"`), []string{"read the manifest", `unknown field "content"`}},
		{"an unknown top-level field", `{"file":[]}`, []string{`unknown field "file"`}},
		{"a string mode", strings.Replace(file(""), "384", `"0600"`, 1), []string{"read the manifest"}},
		{"a relative dst", strings.Replace(file(""), `"/v/a"`, `"v/a"`, 1), []string{`files[0].dst: "v/a" is not absolute`}},
		{"\"..\" in dst", strings.Replace(file(""), `"/v/a"`, `"/v/../etc/passwd"`, 1), []string{`files[0].dst: "/v/../etc/passwd" is not clean`}},
		{"dst the volume itself", strings.Replace(file(""), `"/v/a"`, `"/v"`, 1), []string{`files[0].dst: "/v" is not inside its volume "/v"`}},
		{"dst beside the volume", strings.Replace(file(""), `"/v/a"`, `"/vx/a"`, 1), []string{`is not inside its volume`}},
		{"volume /", strings.Replace(file(""), `"volume":"/v"`, `"volume":"/"`, 1), []string{`files[0].volume: "/" is not allowed`}},
		{"a set-uid mode", strings.Replace(file(""), "384", "2541", 1), []string{"files[0].mode: 04755 has more than permission bits"}},
		{"a negative owner", strings.Replace(file(""), `"uid":1`, `"uid":-1`, 1), []string{"files[0]: owner -1:1 is negative"}},
		{"no src", strings.Replace(file(""), `"/s/f0"`, `""`, 1), []string{"files[0].src: is empty"}},
		{"a dst twice", `{"files":[{"src":"/s/f0","dst":"/o/f0"},{"src":"/s/f1","dst":"/o/f0"}]}`, []string{`files[1].dst: "/o/f0" is already written by files[0]`}},
		{"a relative chown path", `{"chown":[{"path":"v","uid":1,"gid":1}]}`, []string{`chown[0].path: "v" is not absolute`}},
		{"every problem at once", `{"files":[{"src":"s","dst":"/o/../f0","mode":4096}],"chown":[{"path":"/","uid":-2,"gid":0}]}`,
			[]string{"files[0].src", "files[0].dst", "files[0].mode", "chown[0].path", "chown[0]: owner -2:0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.raw))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	files := []bottle.File{
		{Path: "/home/agent/.gitconfig", Content: []byte(secret), Mode: 0o600, UID: 1000, GID: 1000},
		{Path: "/etc/agent.conf", Content: []byte(secret), Mode: 0o644},
		{Path: "/home/agent/work/.env", Content: []byte(secret), Mode: 0o640, UID: 1000, GID: 50},
		{Path: "/home/agentx/f", Content: []byte(secret), Mode: 0o644, UID: 1, GID: 2},
	}
	got, err := New(files, []string{"/home/agent", "/home/agent/work", "/srv"})
	if err != nil {
		t.Fatal(err)
	}
	want := Manifest{Files: []File{
		{Path: "/home/agent/.gitconfig", Src: "/bottle-files/src/f0", Dst: "/home/agent/.gitconfig", Mode: 0o600, UID: 1000, GID: 1000, Volume: "/home/agent"},
		{Path: "/etc/agent.conf", Src: "/bottle-files/src/f1", Dst: "/bottle-files/out/f1", Mode: 0o644},
		// The volume mounted deepest above the file.
		{Path: "/home/agent/work/.env", Src: "/bottle-files/src/f2", Dst: "/home/agent/work/.env", Mode: 0o640, UID: 1000, GID: 50, Volume: "/home/agent/work"},
		// Beside a volume is not in it.
		{Path: "/home/agentx/f", Src: "/bottle-files/src/f3", Dst: "/bottle-files/out/f3", Mode: 0o644, UID: 1, GID: 2},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("New = %+v\nwant %+v", got, want)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), secret) || strings.Contains(fmt.Sprintf("%v %+v %#v", got, got, got), secret) {
		t.Error("the manifest holds a file's content")
	}

	if _, err := New([]bottle.File{{Path: "/etc/../x", Content: []byte(secret)}}, nil); err == nil ||
		!strings.HasPrefix(err.Error(), "internal: ") || strings.Contains(err.Error(), secret) {
		t.Errorf("New of an unclean path = %v, want an internal error without the content", err)
	}
}
