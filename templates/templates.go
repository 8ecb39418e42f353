// Package templates holds the text templates portstripe emits besides the
// compiled files: the systemd unit.
package templates

import (
	_ "embed"
	"text/template"
)

//go:embed portstripe.service.tmpl
var unit string

// Unit is the systemd unit; its data is a UnitData.
var Unit = template.Must(template.New("portstripe.service").Parse(unit))

// UnitData fills the unit. Paths are absolute.
type UnitData struct {
	Binary, Config, Dir, Metrics string
	// StateDirectory is Dir relative to /var/lib when it lies there
	// (systemd's StateDirectory= creates it); empty otherwise, and Dir must
	// exist (ReadWritePaths=).
	StateDirectory string
}
