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
