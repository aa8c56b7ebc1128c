package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RebuildAgentImage imports the agent image of AgentImage again under
// ref, with a label that makes its content (its ID) new: an image rebuilt
// under the same tag. The old content, untagged now, is removed when the
// test ends.
func RebuildAgentImage(t testing.TB, c *client.Client, ref, label string) {
	t.Helper()
	bb, err := Busybox()
	if err != nil {
		t.Skip(err)
	}
	if old, err := c.ImageInspect(context.Background(), ref); err == nil {
		removeImage(t, c, old.ID)
	}
	if err := importBusybox(context.Background(), c, bb, ref, "LABEL rebuilt="+label); err != nil {
		t.Fatal(err)
	}
}

// LoadDatedImage loads into the engine a small image tagged ref, made at
// created and carrying labels (an image an older run left, as docker load
// keeps its date), and removes it when the test ends. The image holds one
// file and has an entrypoint, so a container can be created of it.
func LoadDatedImage(t testing.TB, c *client.Client, ref string, created time.Time, labels map[string]string) string {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	if err := tarOne(&layer, "marker", ref); err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer(layer.Bytes(), types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Labels = labels
	cf.Config.Entrypoint = []string{"/marker"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if err := tarball.Write(tag, img, &archive); err != nil {
		t.Fatal(err)
	}
	resp, err := c.ImageLoad(context.Background(), &archive, client.ImageLoadWithQuiet(true))
	if err != nil {
		t.Fatalf("load %s: %v", ref, err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if bytes.Contains(out, []byte(`"error"`)) {
		t.Fatalf("load %s: %s", ref, out)
	}
	removeImage(t, c, ref)
	inspect, err := c.ImageInspect(context.Background(), ref)
	if err != nil {
		t.Fatalf("load %s: %v (%s)", ref, err, out)
	}
	return inspect.ID
}

func tarOne(w io.Writer, path, content string) error {
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Name: path, Mode: 0o755, Size: int64(len(content)), ModTime: epoch}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, content); err != nil {
		return err
	}
	return tw.Close()
}
