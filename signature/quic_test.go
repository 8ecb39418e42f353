package signature_test

import (
	"bytes"
	"testing"

	"github.com/portstripe/portstripe/signature"
)

// TestQUICVersions: the quic signature takes a v1 and a v2 Initial, and
// not what else a QUIC client or anything else sends first.
func TestQUICVersions(t *testing.T) {
	sig := signature.QUIC.Signature(signature.Settings{}, signature.UDP)
	initial := func(first byte, version []byte, dcidLen byte, size int) []byte {
		p := bytes.Repeat([]byte{0xa5}, size)
		p[0] = first
		copy(p[1:], version)
		p[5] = dcidLen
		return p
	}
	v1, v2 := []byte{0, 0, 0, 1}, []byte{0x6b, 0x33, 0x43, 0xcf}
	tests := []struct {
		name   string
		packet []byte
		want   signature.Result
	}{
		{"v1 Initial", initial(0xc3, v1, 8, 1280), signature.Match},
		{"v1 Initial, 20-byte DCID, 1200 bytes", initial(0xcf, v1, 20, 1200), signature.Match},
		{"v2 Initial (type 01)", initial(0xd1, v2, 8, 1252), signature.Match},
		{"v1 Initial not padded to 1200", initial(0xc3, v1, 8, 1199), signature.NoMatch},
		{"version negotiation (version 0)", initial(0xc0, []byte{0, 0, 0, 0}, 8, 1280), signature.NoMatch},
		{"draft-29", initial(0xc3, []byte{0xff, 0, 0, 0x1d}, 8, 1280), signature.NoMatch},
		{"a greased version", initial(0xc3, []byte{0x1a, 0x2a, 0x3a, 0x4a}, 8, 1280), signature.NoMatch},
		{"v1 Handshake (type 10)", initial(0xe3, v1, 8, 1280), signature.NoMatch},
		{"short header", initial(0x43, v1, 8, 1280), signature.NoMatch},
		{"DCID length 40", initial(0xc3, v1, 40, 1280), signature.NoMatch},
	}
	for _, tt := range tests {
		if got := sig.Match(tt.packet); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
