package redstream

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keyHeader is a payload whose HeaderSource names a header like KeyField.
type keyHeader struct {
	ID string `json:"id"`
}

func (k keyHeader) Headers() map[string]string {
	return map[string]string{KeyField: k.ID, "source": "test"}
}

// publishVia publishes v with opts by mode (a key of publishModes) and
// returns the error. An asynchronous publish that was refused must be
// refused at once, not through its future.
func publishVia[T any](t *testing.T, ctx context.Context, p *Producer[T], mode string, v T, opts ...PublishOption) error {
	t.Helper()
	switch mode {
	case "Publish":
		_, err := p.Publish(ctx, v, opts...)
		return err
	case "PublishBatch":
		_, err := p.PublishBatch(ctx, []T{v}, opts...)
		return err
	case "PublishAsync":
		f, err := p.PublishAsync(ctx, v, opts...)
		if err != nil {
			return err
		}
		_, err = f.Result()
		assert.NoError(t, err, "a refused header is returned by PublishAsync, not by its future")
		return err
	}
	t.Fatalf("unknown publish mode %q", mode)
	return nil
}

// TestPublishRefusesKeyHeader checks that a header named like KeyField is
// refused like one named like the payload field, whether it comes from
// WithHeader, a HeaderSource payload or WithContextHeaders, with or
// without a key, by every way of publishing: the producer routes by the key
// of WithKey or WithKeyFunc, and a key header would contradict it.
func TestPublishRefusesKeyHeader(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx := testCtx(t)
		keyFromCtx := WithContextHeaders(func(_ context.Context, set func(name, value string)) { set(KeyField, "x") })
		cases := map[string]func(mode, stream string) error{
			"WithHeader": func(mode, stream string) error {
				p, err := NewProducer[Order](rdb, stream)
				require.NoError(t, err)
				return publishVia(t, ctx, p, mode, Order{ID: "1"}, WithHeader(KeyField, "x"))
			},
			"WithHeader and WithKey": func(mode, stream string) error {
				p, err := NewProducer[Order](rdb, stream)
				require.NoError(t, err)
				return publishVia(t, ctx, p, mode, Order{ID: "1"}, WithKey("k"), WithHeader(KeyField, "k"))
			},
			"WithHeader on Fields": func(mode, stream string) error {
				p, err := NewProducer[Fields](rdb, stream)
				require.NoError(t, err)
				return publishVia(t, ctx, p, mode, Fields{"a": "1"}, WithHeader(KeyField, "x"))
			},
			"HeaderSource": func(mode, stream string) error {
				p, err := NewProducer[keyHeader](rdb, stream)
				require.NoError(t, err)
				return publishVia(t, ctx, p, mode, keyHeader{ID: "k"})
			},
			"HeaderSource and WithKeyFunc": func(mode, stream string) error {
				p, err := NewProducer[keyHeader](rdb, stream, WithKeyFunc(func(k keyHeader) string { return k.ID }))
				require.NoError(t, err)
				return publishVia(t, ctx, p, mode, keyHeader{ID: "k"})
			},
			"WithContextHeaders": func(mode, stream string) error {
				p, err := NewProducer[Order](rdb, stream, keyFromCtx)
				require.NoError(t, err)
				return publishVia(t, ctx, p, mode, Order{ID: "1"})
			},
		}
		for name, publish := range cases {
			for mode := range publishModes {
				stream := uniqueStream(t)
				err := publish(mode, stream)
				assert.ErrorIs(t, err, ErrInvalidOption, "%s, %s", name, mode)
				if assert.Error(t, err) {
					assert.Contains(t, err.Error(), `header "key"`, "%s, %s", name, mode)
				}
				n, err := rdb.XLen(ctx, stream).Result()
				require.NoError(t, err)
				assert.Zero(t, n, "%s, %s: a refused publish writes nothing", name, mode)
			}
		}
	})
}

// TestPublishWritesKeyField checks that the key of WithKey or WithKeyFunc is
// still written in KeyField, next to the headers.
func TestPublishWritesKeyField(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx := testCtx(t)
		for mode := range publishModes {
			stream := uniqueStream(t)
			p, err := NewProducer[Order](rdb, stream, WithKeyFunc(func(o Order) string { return o.UserID }))
			require.NoError(t, err)
			require.NoError(t, publishVia(t, ctx, p, mode, Order{ID: "1", UserID: "u-1"}, WithHeader("source", "test")))
			require.NoError(t, publishVia(t, ctx, p, mode, Order{ID: "2", UserID: "u-1"}, WithKey("k-2")))
			got, err := rdb.XRange(ctx, stream, "-", "+").Result()
			require.NoError(t, err)
			require.Len(t, got, 2, mode)
			assert.Equal(t, map[string]any{
				"orderId": "1", "userId": "u-1", "source": "test", KeyField: "u-1",
				DefaultPayloadField: `{"id":"1","userId":"u-1","amount":0}`,
			}, got[0].Values, mode)
			assert.Equal(t, "k-2", got[1].Values[KeyField], "%s: WithKey wins over WithKeyFunc", mode)
		}
	})
}
