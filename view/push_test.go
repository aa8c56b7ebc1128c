package view

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/bottle-apply/bottle-apply/app"
)

func TestPushed(t *testing.T) {
	t.Parallel()
	r := &app.PushResult{Ref: "reg.example.com/b:abc", Digest: "sha256:d1", Platforms: []string{"linux/amd64", "linux/arm64"}, Pinned: "reg.example.com/b@sha256:d1"}
	var text bytes.Buffer
	if err := Pushed(&text, "text", r); err != nil {
		t.Fatal(err)
	}
	want := "reg.example.com/b@sha256:d1\npushed reg.example.com/b:abc (linux/amd64, linux/arm64); put the line above in spec.bundle.image to run this bundle image, at this digest\n"
	if text.String() != want {
		t.Errorf("text =\n%s\nwant\n%s", text.String(), want)
	}
	var js bytes.Buffer
	if err := Pushed(&js, "json", r); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	wantJSON := map[string]any{"ref": "reg.example.com/b:abc", "digest": "sha256:d1", "platforms": []any{"linux/amd64", "linux/arm64"}, "pinned": "reg.example.com/b@sha256:d1"}
	if !reflect.DeepEqual(got, wantJSON) {
		t.Errorf("json = %v, want %v", got, wantJSON)
	}
}
