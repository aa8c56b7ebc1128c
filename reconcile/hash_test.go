package reconcile

import (
	"reflect"
	"testing"
)

func TestInputsLabelRoundTrip(t *testing.T) {
	t.Parallel()
	in := map[string]string{"env": "0123456789ab", "image": "ba9876543210"}
	s := EncodeInputs(in)
	if s != "env=0123456789ab,image=ba9876543210" {
		t.Fatalf("EncodeInputs = %q", s)
	}
	if got := DecodeInputs(s); !reflect.DeepEqual(got, in) {
		t.Fatalf("DecodeInputs = %v", got)
	}
	if DecodeInputs("") != nil {
		t.Fatal("DecodeInputs of nothing is not nil")
	}
}

// The hash is a contract with resources that earlier versions made.
func TestFragmentHashIsPinned(t *testing.T) {
	t.Parallel()
	h, inputs := Fragment{In("image", "agent:1"), In("env", map[string]string{"A": "b"}), In("cpus", 2)}.Hash()
	if h != "005f3c0b8d91968b08ad112959a5b93c8011fd365c233135f4247ea41c4a03ee" {
		t.Fatalf("hash = %s: the scheme changed, which replaces every user's resources", h)
	}
	again, _ := Fragment{In("cpus", 2), In("env", map[string]string{"A": "b"}), In("image", "agent:1")}.Hash()
	if h != again {
		t.Fatal("the order of inputs changes the hash")
	}
	if len(inputs) != 3 || len(inputs["image"]) != 12 {
		t.Fatalf("inputs = %v", inputs)
	}
}
