package nbd

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// Netlink is host byte order; the literals below are little endian.
func skipBigEndian(t *testing.T) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("platform: the expected bytes are written for a little-endian host")
	}
}

// hexOf joins space-separated hex groups, so the literals show each
// attribute on its own.
func hexOf(groups ...string) string { return strings.Join(groups, "") }

func TestConnectMessage(t *testing.T) {
	skipBigEndian(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		fds  []int
		want string
	}{
		{
			name: "nbd0, defaults",
			cfg:  Config{Index: 0, Size: 1 << 20},
			fds:  []int{7},
			want: hexOf(
				"01010000",             // genlmsghdr: NBD_CMD_CONNECT, version 1
				"08000100", "00000000", // NBD_ATTR_INDEX u32 0
				"0c000200", "0000100000000000", // NBD_ATTR_SIZE_BYTES u64 1 MiB
				"0c000300", "0010000000000000", // NBD_ATTR_BLOCK_SIZE_BYTES u64 4096
				"0c000500", "0300000000000000", // NBD_ATTR_SERVER_FLAGS HAS_FLAGS|READ_ONLY
				"10000780",             // NBD_ATTR_SOCKETS, nested, 16 bytes
				"0c000180",             //   NBD_SOCK_ITEM, nested, 12 bytes
				"08000100", "07000000", //     NBD_SOCK_FD u32 7
			),
		},
		{
			name: "kernel picks the index, two sockets, timeouts, client flags",
			cfg: Config{Index: AnyIndex, Size: 3 << 30, BlockSize: 512, Timeout: 29500 * time.Millisecond,
				DeadConnTimeout: 2 * time.Minute, ClientFlags: ClientDisconnectOnClose},
			fds: []int{3, 260},
			want: hexOf(
				"01010000",
				"0c000200", "000000c000000000", // 3 GiB
				"0c000300", "0002000000000000", // 512
				"0c000400", "1e00000000000000", // NBD_ATTR_TIMEOUT 30 s (29.5 rounded up)
				"0c000500", "0301000000000000", // HAS_FLAGS|READ_ONLY|CAN_MULTI_CONN
				"0c000600", "0200000000000000", // NBD_ATTR_CLIENT_FLAGS DISCONNECT_ON_CLOSE
				"0c000800", "7800000000000000", // NBD_ATTR_DEAD_CONN_TIMEOUT 120 s
				"1c000780",
				"0c000180", "08000100", "03000000",
				"0c000180", "08000100", "04010000",
			),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := connectMessage(tc.cfg, tc.fds)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(b); got != tc.want {
				t.Errorf("connect message\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestDisconnectReconfigureMessages(t *testing.T) {
	skipBigEndian(t)
	b, err := disconnectMessage(Device(3))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(b), hexOf("02010000", "08000100", "03000000"); got != want {
		t.Errorf("disconnect message %s, want %s", got, want)
	}
	b, err = reconfigureMessage(Device(1), []int{9})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(b), hexOf("03010000", "08000100", "01000000", "10000780", "0c000180", "08000100", "09000000"); got != want {
		t.Errorf("reconfigure message %s, want %s", got, want)
	}
	if _, err := reconfigureMessage(Device(1), nil); err == nil {
		t.Error("reconfigure without sockets: no error")
	}
	if _, err := disconnectMessage(Device(-1)); err == nil {
		t.Error("disconnect of device -1: no error")
	}
}

func TestConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		fds  []int
		want string
	}{
		{"no size", Config{}, []int{3}, "device size 0: want a positive number of bytes"},
		{"size not a multiple of the block size", Config{Size: 1<<20 + 512}, []int{3}, "device size 1049088 is not a multiple of the block size 4096: pad the image"},
		{"block size not a power of two", Config{Size: 1 << 20, BlockSize: 1000}, []int{3}, "block size 1000: want a power of two from 512"},
		{"block size too small", Config{Size: 1 << 20, BlockSize: 256}, []int{3}, "block size 256"},
		{"index", Config{Index: -2, Size: 4096}, []int{3}, "device index -2"},
		{"negative timeout", Config{Size: 4096, Timeout: -time.Second}, []int{3}, "negative timeout"},
		{"no socket", Config{Size: 4096}, nil, "no socket for the kernel"},
		{"bad descriptor", Config{Size: 4096}, []int{-1}, "socket descriptor -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := connectMessage(tc.cfg, tc.fds)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseConnectReply(t *testing.T) {
	skipBigEndian(t)
	for _, tc := range []struct {
		name string
		msg  string
		want Device
		err  string
	}{
		{"index", hexOf("01010000", "08000100", "05000000"), 5, ""},
		{"index after another attribute", hexOf("01010000", "05000900", "ff000000", "08000100", "0f000000"), 15, ""},
		{"no index", hexOf("01010000", "0c000200", "0000100000000000"), 0, "without NBD_ATTR_INDEX"},
		{"attribute longer than the message", hexOf("01010000", "40000100", "05000000"), 0, "attribute of length 64"},
		{"short", "0101", 0, "connect reply of 2 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, _ := hex.DecodeString(tc.msg)
			d, err := parseConnectReply(msg)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || d != tc.want {
				t.Errorf("got %v, %v; want %v", d, err, tc.want)
			}
		})
	}
}

func TestDevicePath(t *testing.T) {
	if p := Device(12).Path(); p != "/dev/nbd12" {
		t.Errorf("Path = %q", p)
	}
}
