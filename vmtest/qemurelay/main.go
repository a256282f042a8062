// Command qemurelay connects its stdin and stdout to a TCP address on the
// loopback. QEMU's user network runs it once per guest connection
// (guestfwd=...-cmd:qemurelay 127.0.0.1:PORT), which gives each guest
// connection its own host connection. The plain guestfwd=...-tcp:HOST:PORT
// form opens one host connection when QEMU starts and shares it between
// all guest connections, so QEMU cannot even start while the server is
// down and cannot survive a server restart: both things the tests need.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: qemurelay 127.0.0.1:PORT")
		os.Exit(2)
	}
	host, _, err := net.SplitHostPort(os.Args[1])
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		// The guest may reach this machine's loopback and nothing else.
		fmt.Fprintf(os.Stderr, "qemurelay: %s: want a loopback address\n", os.Args[1])
		os.Exit(2)
	}
	conn, err := net.Dial("tcp", os.Args[1])
	if err != nil {
		// The guest sees its connection closed: the server is down.
		os.Exit(1)
	}
	tcp := conn.(*net.TCPConn)
	go func() {
		// Guest to server; a guest half-close becomes ours.
		io.CopyBuffer(tcp, os.Stdin, make([]byte, 256<<10))
		tcp.CloseWrite()
	}()
	// Server to guest; when the server closes, so do we.
	io.CopyBuffer(os.Stdout, tcp, make([]byte, 256<<10))
}
