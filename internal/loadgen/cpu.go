package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// CPU is the processor time a measured phase took: ordersd's (user and
// system, all its threads) and the load generator's own, which shares the
// machine with it. Seconds; a side the platform does not report is 0.
//
// On a machine the phase keeps busy, a rate is about the processors over
// the time both sides spend per request, so the CPU per request says what
// a ratio to a floor can reach: about the floor's CPU per request over the
// operation's.
type CPU struct {
	Server float64 `json:"server_s"`
	Client float64 `json:"client_s"`
}

// add returns the sum of c and d.
func (c CPU) add(d CPU) CPU { return CPU{Server: c.Server + d.Server, Client: c.Client + d.Client} }

// CPUPer is the CPU time of one request, or of one event of a read, in
// microseconds: ordersd's and the load generator's (0 where not
// measured).
type CPUPer struct {
	Server float64 `json:"server_us"`
	Client float64 `json:"client_us"`
}

// add returns the sum of c and d: what a request of both costs.
func (c CPUPer) add(d CPUPer) CPUPer {
	return CPUPer{Server: c.Server + d.Server, Client: c.Client + d.Client}
}

// perEvent returns c spread over n events.
func (c CPU) perEvent(n uint64) CPUPer {
	if n == 0 {
		return CPUPer{}
	}
	return CPUPer{Server: c.Server / float64(n) * 1e6, Client: c.Client / float64(n) * 1e6}
}

// perRequest returns r's CPU over its requests that succeeded (zero when
// r has no CPU or none succeeded), those a closed loop had answered after
// its end included: the CPU is metered until they were.
func perRequest(r *Report) CPUPer {
	if r == nil || r.CPU == nil {
		return CPUPer{}
	}
	n := okCount(r) + r.Overall.LateOK
	if n <= 0 {
		return CPUPer{}
	}
	return r.CPU.perEvent(uint64(n))
}

// String renders c as "ordersd + load generator µs", with "?" for a side
// not measured; "" when neither was.
func (c CPUPer) String() string {
	switch {
	case c.Server == 0 && c.Client == 0:
		return ""
	case c.Server == 0:
		return fmt.Sprintf("? + %.0f µs", c.Client)
	}
	return fmt.Sprintf("%.0f + %.0f µs", c.Server, c.Client)
}

// userHZ is the unit of /proc/PID/stat's CPU times: Linux reports them in
// USER_HZ, which its ABI fixes at 100 for user space on every
// architecture Go supports.
const userHZ = 100

// procCPU returns the user and system CPU time of process pid, all threads
// and the children it waited for excluded, from /proc/PID/stat; false
// where there is none.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/PID/stat line. The command name (field 2) is in parentheses and
// may hold spaces and parentheses itself, so the fields are counted from
// its last closing one.
func parseStatCPU(b []byte) (time.Duration, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	// After the name: state (field 3), then fields 4 onwards.
	f := bytes.Fields(b[i+1:])
	const utime = 14 - 3
	if len(f) <= utime+1 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(string(f[utime]), 10, 64)
	s, err2 := strconv.ParseUint(string(f[utime+1]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+s) * time.Second / userHZ, true
}

// selfCPU returns this process's user and system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuClock reads the CPU time of ordersd (pid; 0 when it is not a process
// of its own) and of this process.
type cpuClock struct{ pid int }

type cpuReading struct {
	server, client time.Duration
	serverOK       bool
}

func (c cpuClock) read() cpuReading {
	r := cpuReading{client: selfCPU()}
	if c.pid > 0 {
		r.server, r.serverOK = procCPU(c.pid)
	}
	return r
}

// since returns the CPU spent from r0 to now.
func (c cpuClock) since(r0 cpuReading) CPU {
	r1 := c.read()
	out := CPU{Client: (r1.client - r0.client).Seconds()}
	if r0.serverOK && r1.serverOK {
		out.Server = (r1.server - r0.server).Seconds()
	}
	return out
}

// metered returns ph with its report's CPU set to what the phase took.
func (c cpuClock) metered(ph phase) phase {
	return func(ctx context.Context, d time.Duration) (*Report, error) {
		r0 := c.read()
		r, err := ph(ctx, d)
		if r != nil {
			cpu := c.since(r0)
			r.CPU = &cpu
		}
		return r, err
	}
}

// cpuRatio is a floor's CPU per request over an operation's, both sides
// added up; 0 unless both were measured on both sides.
func cpuRatio(floor, op CPUPer) float64 {
	if floor.Server <= 0 || floor.Client <= 0 || op.Server <= 0 || op.Client <= 0 {
		return 0
	}
	return (floor.Server + floor.Client) / (op.Server + op.Client)
}
