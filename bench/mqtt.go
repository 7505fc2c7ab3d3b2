package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// mqttDevice is the smallest MQTT 3.1.1 client the ingress bench needs: a
// connection that publishes at QoS 1, subscribes, acknowledges what it
// receives at QoS 1 and reports PUBACKs and messages through callbacks (on
// the read goroutine). A bench of many devices needs one cheap connection
// per device; the real-client tests use mosquitto and paho.
type mqttDevice struct {
	conn      net.Conn
	wmu       sync.Mutex
	w         *bufio.Writer
	nextID    uint16
	onPuback  func(id uint16)
	onMessage func(topic string, payload []byte)
	suback    chan byte
	done      chan struct{}
	err       error
}

func dialMQTT(addr, clientID string, onPuback func(uint16), onMessage func(string, []byte)) (*mqttDevice, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	d := &mqttDevice{conn: c, w: bufio.NewWriterSize(c, 64<<10), onPuback: onPuback, onMessage: onMessage,
		suback: make(chan byte, 1), done: make(chan struct{})}
	// CONNECT: protocol "MQTT" level 4, clean session, keepalive 0 (off).
	var vh []byte
	vh = appendStr(vh, "MQTT")
	vh = append(vh, 4, 0x02, 0, 0)
	vh = appendStr(vh, clientID)
	if err := d.write(0x10, vh); err != nil || d.w.Flush() != nil {
		c.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(c, 64<<10)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, body, err := readPacket(r)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("mqtt CONNACK: %w", err)
	}
	if typ>>4 != 2 || len(body) < 2 || body[1] != 0 {
		c.Close()
		return nil, fmt.Errorf("mqtt: connection refused (packet %#x %v)", typ, body)
	}
	_ = c.SetReadDeadline(time.Time{})
	go d.readLoop(r)
	return d, nil
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func (d *mqttDevice) write(header byte, body []byte) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	return d.writeLocked(header, body)
}

func (d *mqttDevice) writeLocked(header byte, body []byte) error {
	var lb [5]byte
	n, l := 0, len(body)
	for {
		b := byte(l % 128)
		l /= 128
		if l > 0 {
			b |= 0x80
		}
		lb[n] = b
		n++
		if l == 0 {
			break
		}
	}
	if err := d.w.WriteByte(header); err != nil {
		return err
	}
	if _, err := d.w.Write(lb[:n]); err != nil {
		return err
	}
	_, err := d.w.Write(body)
	return err
}

// publish sends a QoS 1 PUBLISH and returns its packet id; flush sends
// what is buffered.
func (d *mqttDevice) publish(topic string, payload []byte) (uint16, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.nextID++
	if d.nextID == 0 {
		d.nextID = 1
	}
	body := make([]byte, 0, 2+len(topic)+2+len(payload))
	body = appendStr(body, topic)
	body = binary.BigEndian.AppendUint16(body, d.nextID)
	body = append(body, payload...)
	if err := d.writeLocked(0x32, body); err != nil {
		return 0, err
	}
	return d.nextID, d.w.Flush()
}

func (d *mqttDevice) subscribe(topic string, qos byte) error {
	body := binary.BigEndian.AppendUint16(nil, 1)
	body = appendStr(body, topic)
	body = append(body, qos)
	d.wmu.Lock()
	err := d.writeLocked(0x82, body)
	if err == nil {
		err = d.w.Flush()
	}
	d.wmu.Unlock()
	if err != nil {
		return err
	}
	select {
	case rc := <-d.suback:
		if rc == 0x80 {
			return fmt.Errorf("mqtt: subscription to %s refused", topic)
		}
		return nil
	case <-d.done:
		return d.err
	case <-time.After(10 * time.Second):
		return errors.New("mqtt: no SUBACK within 10s")
	}
}

func (d *mqttDevice) readLoop(r *bufio.Reader) {
	defer close(d.done)
	for {
		typ, body, err := readPacket(r)
		if err != nil {
			d.err = err
			return
		}
		switch typ >> 4 {
		case 3: // PUBLISH
			if len(body) < 2 {
				continue
			}
			tl := int(binary.BigEndian.Uint16(body))
			if len(body) < 2+tl {
				continue
			}
			topic, rest := string(body[2:2+tl]), body[2+tl:]
			if (typ>>1)&3 > 0 && len(rest) >= 2 {
				id := rest[:2]
				rest = rest[2:]
				// The PUBACK goes out with the next flush once
				// nothing more is buffered to read: answers arrive
				// in bursts, and a write per PUBACK was most of the
				// devices' CPU (the server takes them in one read).
				d.wmu.Lock()
				_ = d.writeLocked(0x40, id)
				if r.Buffered() == 0 {
					_ = d.w.Flush()
				}
				d.wmu.Unlock()
			}
			d.onMessage(topic, rest)
		case 4: // PUBACK
			if len(body) >= 2 {
				d.onPuback(binary.BigEndian.Uint16(body))
			}
		case 9: // SUBACK
			if len(body) >= 3 {
				select {
				case d.suback <- body[2]:
				default:
				}
			}
		}
	}
}

func readPacket(r *bufio.Reader) (byte, []byte, error) {
	typ, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	l, mul := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		l += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("mqtt: malformed remaining length")
		}
		mul *= 128
	}
	body := make([]byte, l)
	_, err = io.ReadFull(r, body)
	return typ, body, err
}

// closedBy is the error that ended the connection's read loop (the server
// closed it, or it broke) before close was called; nil while it is open.
func (d *mqttDevice) closedBy() error {
	select {
	case <-d.done:
		if d.err == nil {
			return errors.New("closed")
		}
		return d.err
	default:
		return nil
	}
}

func (d *mqttDevice) close() {
	d.wmu.Lock()
	_ = d.writeLocked(0xe0, nil) // DISCONNECT
	_ = d.w.Flush()
	d.wmu.Unlock()
	d.conn.Close()
	<-d.done
}
