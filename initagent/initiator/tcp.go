package initiator

import (
	"bufio"
	"net"

	"github.com/overboot/overboot/internal/iscsiwire"
)

// TCP is a Transport over a plain connection (tests; discovery).
type TCP struct {
	Conn    net.Conn
	Digests iscsiwire.Digests
	r       *bufio.Reader
}

func (t *TCP) Send(p *iscsiwire.PDU) error {
	b, err := p.Marshal(t.Digests)
	if err != nil {
		return err
	}
	_, err = t.Conn.Write(b)
	return err
}

func (t *TCP) Recv() (*iscsiwire.PDU, error) {
	if t.r == nil {
		t.r = bufio.NewReader(t.Conn)
	}
	return iscsiwire.ReadPDU(t.r, t.Digests, iscsiwire.MaxDataSegment)
}
