package testharness

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// NetNS is a network namespace of a test's own, joined to the machine's
// by a veth pair on a /30 of its own: a server in it listens on its fixed
// ports (an AD DC's 389 and 636) without meeting anything else on the
// machine, another run's namespace included. Nothing of it is named in
// the machine's /run: a process (unshare --net) holds the namespace, and
// the namespace, its end of the pair and the pair go with that process.
type NetNS struct {
	// HostIP is the machine's end of the pair, IP the namespace's.
	HostIP, IP string
	holder     *exec.Cmd
	hostIf     string
}

// NewNetNS makes a namespace with lo and one veth end up.
func NewNetNS() (*NetNS, error) {
	holder := exec.Command("unshare", "--net", "--", "sleep", "infinity")
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := holder.Start(); err != nil {
		return nil, fmt.Errorf("unshare --net: %w", err)
	}
	n := &NetNS{holder: holder}
	ok := false
	defer func() {
		if !ok {
			n.Close()
		}
	}()
	// unshare has made the namespace once its net link differs from ours.
	self, _ := os.Readlink("/proc/self/ns/net")
	for deadline := time.Now().Add(5 * time.Second); ; {
		if got, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)); err == nil && got != self {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("unshare --net made no namespace within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var b [6]byte
	rand.Read(b[:])
	// A /30 in 10.231.0.0/16 nothing on the machine is on, and interface
	// names of our own (at most 15 bytes).
	addrs, _ := net.InterfaceAddrs()
	for tries := 0; ; tries++ {
		k := uint32(binary.BigEndian.Uint16(b[:2]))&0x3fff + uint32(tries)
		base := 10<<24 | 231<<16 | (k*4)&0xffff
		host, inside := ipv4(base+1), ipv4(base+2)
		if !onMachine(addrs, host, inside) {
			n.HostIP, n.IP = host.String(), inside.String()
			break
		}
		if tries > 100 {
			return nil, fmt.Errorf("no free /30 in 10.231.0.0/16")
		}
	}
	tag := hex.EncodeToString(b[2:])
	n.hostIf = "csh" + tag
	pid := strconv.Itoa(holder.Process.Pid)
	for _, argv := range [][]string{
		{"ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", "csn" + tag, "netns", pid},
		{"ip", "addr", "add", n.HostIP + "/30", "dev", n.hostIf},
		{"ip", "link", "set", n.hostIf, "up"},
		{"nsenter", "-t", pid, "-n", "ip", "addr", "add", n.IP + "/30", "dev", "csn" + tag},
		{"nsenter", "-t", pid, "-n", "ip", "link", "set", "csn" + tag, "up"},
		{"nsenter", "-t", pid, "-n", "ip", "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
		}
	}
	ok = true
	return n, nil
}

func ipv4(v uint32) net.IP { return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)) }

func onMachine(addrs []net.Addr, ips ...net.IP) bool {
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			for _, ip := range ips {
				if ipn.Contains(ip) {
					return true
				}
			}
		}
	}
	return false
}

// Command is a command run inside the namespace.
func (n *NetNS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(n.holder.Process.Pid), "-n", "--", name}, args...)...)
}

// Close ends the namespace (stop what runs in it first): the holder goes,
// and with the namespace its veth pair.
func (n *NetNS) Close() error {
	if n.holder == nil || n.holder.Process == nil {
		return nil
	}
	syscall.Kill(-n.holder.Process.Pid, syscall.SIGKILL)
	n.holder.Wait()
	n.holder = nil
	// The pair goes with the namespace; make sure of the machine's end.
	if n.hostIf != "" {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, err := net.InterfaceByName(n.hostIf); err != nil {
				return nil
			}
		}
		if out, err := exec.Command("ip", "link", "del", n.hostIf).CombinedOutput(); err != nil {
			return fmt.Errorf("ip link del %s: %v: %s", n.hostIf, err, out)
		}
	}
	return nil
}
