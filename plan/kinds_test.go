package plan

import (
	"slices"
	"strings"
	"testing"
)

// TestKindsPlan: the planner orders and refuses the registry's kinds as it
// does the first ones: TLS by precedence (SNI and ALPN, SNI, ALPN,
// catch-all) whatever the node file's order, overlaps at one level refused.
func TestKindsPlan(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    []string
		wantErr []string
	}{
		{
			name: "tls precedence: SNI+ALPN, SNI, ALPN, catch-all",
			yaml: head + `striped: {tcp: ["1-100"], udp: []}
services:
  - {name: any, kind: tls, tcp: 127.0.0.1:8000}
  - {name: h2, kind: tls, alpn: [h2], tcp: 127.0.0.1:8001}
  - {name: www, kind: tls, sni: [www.example.org], tcp: 127.0.0.1:8002}
  - {name: www_h2, kind: tls, sni: [www.example.org], alpn: [h2], tcp: 127.0.0.1:8003}
  - {name: web1, kind: tls, alpn: [http/1.1], tcp: 127.0.0.1:8004}
`,
			want: []string{"tcp 1-100 [www_h2 www h2 web1 any] default reject fe_striped"},
		},
		{
			name: "two ALPN services offering one protocol",
			yaml: head + `striped: {tcp: ["1-100"], udp: []}
services:
  - {name: a, kind: tls, alpn: [h2, http/1.1], tcp: 127.0.0.1:8000}
  - {name: b, kind: tls, alpn: [http/1.1], tcp: 127.0.0.1:8001}
`,
			wantErr: []string{"services[1]:", "a and b cannot share tcp 1-100", "TLS ClientHello ALPN h2 http/1.1 and TLS ClientHello ALPN http/1.1"},
		},
		{
			name: "one name, other protocols: both",
			yaml: head + `striped: {tcp: ["1-100"], udp: []}
services:
  - {name: a, kind: tls, sni: [x.example], alpn: [h2], tcp: 127.0.0.1:8000}
  - {name: b, kind: tls, sni: [x.example], alpn: [http/1.1], tcp: 127.0.0.1:8001}
`,
			want: []string{"tcp 1-100 [a b] default reject fe_striped"},
		},
		{
			name: "one name and one protocol twice",
			yaml: head + `striped: {tcp: ["1-100"], udp: []}
services:
  - {name: a, kind: tls, sni: [x.example, y.example], alpn: [h2], tcp: 127.0.0.1:8000}
  - {name: b, kind: tls, sni: [y.example], alpn: [h2, h3], tcp: 127.0.0.1:8001}
`,
			wantErr: []string{"services[1]:", "a and b cannot share tcp 1-100"},
		},
		{
			name: "custom prefixes: the longer first, the new kinds beside them",
			yaml: head + `striped: {tcp: ["1-100"], udp: ["1-100"]}
services:
  - {name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {prefix: 4b42}}
  - {name: kbproto, kind: custom, tcp: 127.0.0.1:7001, custom: {prefix: 4b4250524f544f}}
  - {name: proxy, kind: socks5, tcp: 127.0.0.1:1080}
  - {name: chat, kind: xmpp, tcp: 127.0.0.1:5222}
  - {name: desk, kind: rdp, tcp: 127.0.0.1:3389}
  - {name: mesh, kind: tinc, tcp: 127.0.0.1:655}
  - {name: ssh, kind: ssh, tcp: 127.0.0.1:22}
  - {name: game, kind: custom, udp: 27015, custom: {match: [{offset: 0, bytes: ffffffff}]}}
  - {name: rtc, kind: dtls, udp: 3478}
  - {name: wg, kind: wireguard, udp: 21820}
`,
			want: []string{
				"udp 1-100 [game rtc wg] default reject",
				"tcp 1-100 [kbproto kb desk proxy mesh ssh chat] default reject fe_striped",
			},
		},
		{
			name: "one custom prefix twice",
			yaml: head + `striped: {tcp: ["1-100"], udp: []}
services:
  - {name: a, kind: custom, tcp: 127.0.0.1:7000, custom: {prefix: 4b42}}
  - {name: b, kind: custom, tcp: 127.0.0.1:7001, custom: {prefix: 4B42}}
`,
			wantErr: []string{"services[1]:", "a and b cannot share tcp 1-100", "no signature tells them apart"},
		},
		{
			name: "a custom prefix that takes another family's clients",
			yaml: head + `striped: {tcp: ["1-100"], udp: []}
services:
  - {name: ssh, kind: ssh, tcp: 127.0.0.1:22}
  - {name: fake, kind: custom, tcp: 127.0.0.1:7000, custom: {prefix: 5353}}
`,
			wantErr: []string{"services[1]:", "fake and ssh cannot share tcp 1-100", "fake (custom prefix 5353) may take a client of ssh (SSH banner)"},
		},
		{
			name: "tls-crypt-v2's opcode is the P of a custom prefix",
			yaml: head + `striped: {tcp: ["1-100"], udp: []}
services:
  - {name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {prefix: 4b4250524f544f}}
  - {name: v2, kind: openvpn, tls: {mode: tls-crypt-v2}, tcp: 127.0.0.1:1194}
`,
			wantErr: []string{"services[1]:", "v2 (OpenVPN tls-crypt-v2) may take a client of kb"},
		},
		{
			name: "a custom UDP match that takes WireGuard's clients",
			yaml: head + `striped: {tcp: [], udp: ["1-100"]}
services:
  - {name: wg, kind: wireguard, udp: 21820}
  - {name: game, kind: custom, udp: 27015, custom: {match: [{offset: 0, bytes: "01"}]}}
`,
			wantErr: []string{"services[1]:", "game (custom match 01@0) may take a client of wg"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := build(t, tt.yaml)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error; plan %v", summary(p))
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(p); !slices.Equal(got, tt.want) {
				t.Errorf("plan\n  %q\nwant\n  %q", got, tt.want)
			}
		})
	}
}
