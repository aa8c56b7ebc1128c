package reconcile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Input is one named input of a resource's configuration.
type Input struct {
	Name  string
	Value any // plain data: strings, numbers, slices, maps
}

// Fragment is the normalized spec fragment a resource is made from.
type Fragment []Input

func digest(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("internal: hash input: %v", err)) // only plain data is hashed
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Hash returns the config hash (sha256 of the JSON of the per-input
// digests) and the 12-hex digest of each input, from which Diff names what
// changed without ever holding a value. Only the inputs' names and values
// count, so the hash is stable across bottle-apply versions as long as
// they are.
func (f Fragment) Hash() (string, map[string]string) {
	inputs := make(map[string]string, len(f))
	for _, in := range f {
		inputs[in.Name] = digest(in.Value)[:12]
	}
	return digest(inputs), inputs
}

// EncodeInputs renders per-input digests as a label value: "a=123,b=456".
func EncodeInputs(in map[string]string) string {
	keys := slices.Sorted(maps.Keys(in))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + in[k]
	}
	return strings.Join(parts, ",")
}

// DecodeInputs reads what EncodeInputs wrote.
func DecodeInputs(s string) map[string]string {
	if s == "" {
		return nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

// In names an input.
func In(name string, value any) Input { return Input{Name: name, Value: value} }
