// Package slot computes Redis Cluster hash slots, so tests (and partition
// routing) can check that keys meant to share a slot do.
package slot

import "strings"

// Count is the number of hash slots in a Redis Cluster.
const Count = 16384

// HashTag returns the part of key that Redis Cluster hashes: the text between
// the first '{' and the first '}' after it when that text is not empty, and
// the whole key otherwise.
func HashTag(key string) string {
	if tag, ok := Tag(key); ok {
		return tag
	}
	return key
}

// Tag returns the key's hash tag and true when the key has a non-empty one.
func Tag(key string) (string, bool) {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return "", false
	}
	closeAt := strings.IndexByte(key[open+1:], '}')
	if closeAt <= 0 {
		return "", false
	}
	return key[open+1 : open+1+closeAt], true
}

// Of returns the hash slot of key: CRC16 (XMODEM) of its hash tag mod 16384.
func Of(key string) int {
	return int(crc16(HashTag(key))) % Count
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
