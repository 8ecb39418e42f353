package signature

// SSH: an SSH server; its clients send their banner first.
var SSH Kind = sshKind{plain{"ssh"}}

// FamilySSH: "SSH-".
const FamilySSH Family = "ssh"

func init() {
	register(SSH, 20)
	families[FamilySSH] = familyInfo{rank: 2, caveat: func(Signature) string {
		return "clients that wait for the server to speak first (ssh-keyscan) send nothing, and get the default after the inspect-delay"
	}}
}

type sshKind struct{ plain }

func (sshKind) Protos() []Proto { return []Proto{TCP} }
func (sshKind) Probe() Probe    { return ProbeSSHBanner }

func (sshKind) Signature(_ Settings, p Proto) Signature {
	return Signature{Proto: p, Family: FamilySSH, Label: "SSH banner", Bytes: []Bytes{{Offset: 0, Value: []byte("SSH-"), What: `"SSH-"`}}}
}

func (sshKind) Example(Settings, Proto) (Example, error) {
	return Example{[]byte("SSH-2.0-OpenSSH_9.2p1\r\n"), "SSH client banner"}, nil
}
