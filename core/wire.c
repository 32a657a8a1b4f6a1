/* SPDX-License-Identifier: MIT */
/*
 * wire.c - encode and decode control messages and data frames. A cursor
 * records the first overrun; every decoder checks it once at the end and
 * also requires that the payload is consumed exactly.
 */
#include <errno.h>
#include <string.h>

#include "log.h"
#include "wire.h"

_Static_assert(RMIG_CTL_HDR_LEN == 4 + 2 + 2 + 4 + 4, "control header layout");
_Static_assert(RMIG_FRAME_HDR_LEN == 4 + 1 + 1 + 2 + 4 + 4 + 8 + 8, "frame header layout");
_Static_assert(32 + RMIG_BLOCKS_MAX * (RMIG_NAME_MAX + 16) <= RMIG_CTL_MAX,
	       "HELLO with every block fits one control message");
_Static_assert(12 + RMIG_BLOBS_MAX * RMIG_DIGEST_LEN + RMIG_BLOCKS_MAX * RMIG_DIGEST_LEN <=
		       RMIG_CTL_MAX,
	       "COMPLETE with every digest fits one control message");

static const char *const msg_names[RMIG_MSG_TYPE_MAX] = {
	[RMIG_MSG_HELLO] = "HELLO",
	[RMIG_MSG_HELLO_ACK] = "HELLO_ACK",
	[RMIG_MSG_ERROR] = "ERROR",
	[RMIG_MSG_SYNC_ACK] = "SYNC_ACK",
	[RMIG_MSG_STATE_BEGIN] = "STATE_BEGIN",
	[RMIG_MSG_COMPLETE] = "COMPLETE",
	[RMIG_MSG_COMPLETE_ACK] = "COMPLETE_ACK",
	[RMIG_MSG_PING] = "PING",
	[RMIG_MSG_REG] = "REG",
	[RMIG_MSG_AUTH_CHALLENGE] = "AUTH_CHALLENGE",
	[RMIG_MSG_AUTH_PROOF] = "AUTH_PROOF",
	[RMIG_MSG_PC_DISCARD] = "PC_DISCARD",
	[RMIG_MSG_PC_RUN] = "PC_RUN",
	[RMIG_MSG_PAGE_REQ] = "PAGE_REQ",
	[RMIG_MSG_RAILS] = "RAILS",
	[RMIG_MSG_RAILS_USE] = "RAILS_USE",
	[RMIG_MSG_RAIL_DOWN] = "RAIL_DOWN",
	[RMIG_MSG_FALLBACK] = "FALLBACK",
};

static const char *const frame_names[RMIG_FRAME_TYPE_MAX] = {
	[RMIG_FRAME_WRITE_RAM] = "WRITE_RAM",
	[RMIG_FRAME_ZERO_RAM] = "ZERO_RAM",
	[RMIG_FRAME_WRITE_STATE] = "WRITE_STATE",
	[RMIG_FRAME_SYNC] = "SYNC",
	[RMIG_FRAME_CHAN_HELLO] = "CHAN_HELLO",
};

const char *rmig_msg_name(unsigned int type)
{
	if (type < RMIG_MSG_TYPE_MAX && msg_names[type])
		return msg_names[type];
	return "UNKNOWN";
}

const char *rmig_frame_name(unsigned int type)
{
	if (type < RMIG_FRAME_TYPE_MAX && frame_names[type])
		return frame_names[type];
	return "UNKNOWN";
}

struct cur {
	uint8_t *wp;       /* encode */
	const uint8_t *rp; /* decode */
	size_t len;
	size_t off;
	bool bad;
};

static uint8_t *cur_take(struct cur *c, size_t n)
{
	uint8_t *p;

	if (c->bad || n > c->len - c->off) {
		c->bad = true;
		return NULL;
	}
	p = (c->wp ? c->wp : (uint8_t *)(uintptr_t)c->rp) + c->off;
	c->off += n;
	return p;
}

static void put16(struct cur *c, uint16_t v)
{
	uint8_t *p = cur_take(c, 2);

	if (p)
		rmig_put_be16(p, v);
}

static void put32(struct cur *c, uint32_t v)
{
	uint8_t *p = cur_take(c, 4);

	if (p)
		rmig_put_be32(p, v);
}

static void put64(struct cur *c, uint64_t v)
{
	uint8_t *p = cur_take(c, 8);

	if (p)
		rmig_put_be64(p, v);
}

static void putbytes(struct cur *c, const void *src, size_t n)
{
	uint8_t *p = cur_take(c, n);

	if (p && n)
		memcpy(p, src, n);
}

static uint16_t get16(struct cur *c)
{
	const uint8_t *p = cur_take(c, 2);

	return p ? rmig_get_be16(p) : 0;
}

static uint32_t get32(struct cur *c)
{
	const uint8_t *p = cur_take(c, 4);

	return p ? rmig_get_be32(p) : 0;
}

static uint64_t get64(struct cur *c)
{
	const uint8_t *p = cur_take(c, 8);

	return p ? rmig_get_be64(p) : 0;
}

static void getbytes(struct cur *c, void *dst, size_t n)
{
	const uint8_t *p = cur_take(c, n);

	if (p && n)
		memcpy(dst, p, n);
}

/* A fixed NAME_MAX field: NUL-padded, must hold a non-empty NUL-terminated string. */
static void getname(struct cur *c, char *dst)
{
	getbytes(c, dst, RMIG_NAME_MAX);
	if (!c->bad && (dst[0] == '\0' || !memchr(dst, '\0', RMIG_NAME_MAX)))
		c->bad = true;
}

static void putname(struct cur *c, const char *name)
{
	char tmp[RMIG_NAME_MAX] = { 0 };

	memcpy(tmp, name, strnlen(name, RMIG_NAME_MAX - 1));
	putbytes(c, tmp, RMIG_NAME_MAX);
}

static int enc_end(struct cur *c)
{
	return c->bad ? -ENOSPC : (int)c->off;
}

static int dec_end(struct cur *c)
{
	return c->bad || c->off != c->len ? -EBADMSG : 0;
}

#define ENC(buf, cap) { .wp = (buf), .len = (cap) }
#define DEC(buf, n) { .rp = (buf), .len = (n) }

void rmig_ctl_hdr_encode(uint8_t *buf, uint16_t type, uint32_t len)
{
	rmig_put_be32(buf, RMIG_CTL_MAGIC);
	rmig_put_be16(buf + 4, type);
	rmig_put_be16(buf + 6, 0);
	rmig_put_be32(buf + 8, len);
	rmig_put_be32(buf + 12, 0);
}

int rmig_ctl_hdr_decode(const uint8_t *buf, struct rmig_ctl_hdr *h)
{
	if (rmig_get_be32(buf) != RMIG_CTL_MAGIC)
		return -EBADMSG;
	h->type = rmig_get_be16(buf + 4);
	h->len = rmig_get_be32(buf + 8);
	if (h->type == 0 || h->type >= RMIG_MSG_TYPE_MAX || h->len > RMIG_CTL_MAX)
		return -EBADMSG;
	return 0;
}

int rmig_hello_encode(const struct rmig_msg_hello *m, uint8_t *buf, size_t cap)
{
	struct cur c = ENC(buf, cap);

	if (m->nblocks > RMIG_BLOCKS_MAX)
		return -EINVAL;
	put32(&c, m->version);
	put32(&c, m->caps);
	put64(&c, m->session_id);
	put32(&c, m->nchannels);
	put32(&c, m->transport);
	put32(&c, m->nblocks);
	put32(&c, 0);
	for (uint32_t i = 0; i < m->nblocks; i++) {
		putname(&c, m->blocks[i].name);
		put64(&c, m->blocks[i].length);
		put32(&c, m->blocks[i].page_size);
		put32(&c, 0);
	}
	return enc_end(&c);
}

int rmig_hello_decode(const uint8_t *buf, size_t len, struct rmig_msg_hello *m)
{
	struct cur c = DEC(buf, len);

	m->version = get32(&c);
	m->caps = get32(&c);
	m->session_id = get64(&c);
	m->nchannels = get32(&c);
	m->transport = get32(&c);
	m->nblocks = get32(&c);
	(void)get32(&c);
	/*
	 * Another version may lay out the rest differently: stop here and let
	 * the caller report the version mismatch as such.
	 */
	if (!c.bad && m->version != RMIG_PROTO_VERSION)
		return 0;
	if (c.bad || m->nblocks > RMIG_BLOCKS_MAX)
		return -EBADMSG;
	for (uint32_t i = 0; i < m->nblocks; i++) {
		getname(&c, m->blocks[i].name);
		m->blocks[i].length = get64(&c);
		m->blocks[i].page_size = get32(&c);
		(void)get32(&c);
	}
	return dec_end(&c);
}

int rmig_hello_ack_encode(const struct rmig_msg_hello_ack *m, uint8_t *buf, size_t cap)
{
	struct cur c = ENC(buf, cap);

	if (m->ep_len > RMIG_EP_MAX)
		return -EINVAL;
	put32(&c, m->version);
	put32(&c, m->caps);
	put16(&c, m->ep_len);
	put16(&c, 0);
	putbytes(&c, m->ep, m->ep_len);
	return enc_end(&c);
}

int rmig_hello_ack_decode(const uint8_t *buf, size_t len, struct rmig_msg_hello_ack *m)
{
	struct cur c = DEC(buf, len);

	m->version = get32(&c);
	m->caps = get32(&c);
	m->ep_len = get16(&c);
	(void)get16(&c);
	if (c.bad || m->ep_len > RMIG_EP_MAX)
		return -EBADMSG;
	getbytes(&c, m->ep, m->ep_len);
	return dec_end(&c);
}

int rmig_error_encode(const struct rmig_msg_error *m, uint8_t *buf, size_t cap)
{
	struct cur c = ENC(buf, cap);
	size_t n = strnlen(m->msg, RMIG_ERRMSG_MAX - 1);

	put32(&c, (uint32_t)m->code);
	put16(&c, (uint16_t)n);
	putbytes(&c, m->msg, n);
	return enc_end(&c);
}

int rmig_error_decode(const uint8_t *buf, size_t len, struct rmig_msg_error *m)
{
	struct cur c = DEC(buf, len);
	char raw[RMIG_ERRMSG_MAX];
	uint16_t n;

	m->code = (int32_t)get32(&c);
	n = get16(&c);
	if (c.bad || n >= RMIG_ERRMSG_MAX || m->code <= 0 || m->code > 4095)
		return -EBADMSG;
	getbytes(&c, raw, n);
	raw[c.bad ? 0 : n] = '\0';
	/*
	 * The text is shown to operators: control bytes become \xNN, as in
	 * every log line (a longer text is cut at the end of the field).
	 */
	rmig_escape(m->msg, sizeof(m->msg), raw);
	return dec_end(&c);
}

int rmig_u64_encode(uint64_t v, uint8_t *buf, size_t cap)
{
	struct cur c = ENC(buf, cap);

	put64(&c, v);
	return enc_end(&c);
}

int rmig_u64_decode(const uint8_t *buf, size_t len, uint64_t *v)
{
	struct cur c = DEC(buf, len);

	*v = get64(&c);
	return dec_end(&c);
}

int rmig_state_begin_encode(const struct rmig_msg_state_begin *m, uint8_t *buf, size_t cap)
{
	struct cur c = ENC(buf, cap);

	put32(&c, m->blob);
	put32(&c, m->instance);
	put64(&c, m->total);
	putname(&c, m->name);
	return enc_end(&c);
}

int rmig_state_begin_decode(const uint8_t *buf, size_t len, struct rmig_msg_state_begin *m)
{
	struct cur c = DEC(buf, len);

	m->blob = get32(&c);
	m->instance = get32(&c);
	m->total = get64(&c);
	getname(&c, m->name);
	return dec_end(&c);
}

int rmig_pc_discard_encode(const struct rmig_msg_pc_discard *m, uint8_t *buf, size_t cap)
{
	struct cur c = ENC(buf, cap);

	put32(&c, m->block);
	put64(&c, m->first);
	put32(&c, m->nbits);
	putbytes(&c, m->bits, ((size_t)m->nbits + 7) / 8);
	return enc_end(&c);
}

int rmig_pc_discard_decode(const uint8_t *buf, size_t len, struct rmig_msg_pc_discard *m)
{
	struct cur c = DEC(buf, len);

	m->block = get32(&c);
	m->first = get64(&c);
	m->nbits = get32(&c);
	if (m->nbits == 0 || m->nbits > RMIG_PC_DISCARD_BITS)
		return -EBADMSG;
	m->bits = cur_take(&c, ((size_t)m->nbits + 7) / 8);
	return dec_end(&c);
}

int rmig_page_req_encode(const struct rmig_msg_page_req *m, uint8_t *buf, size_t cap)
{
	struct cur c = ENC(buf, cap);

	put32(&c, m->block);
	put64(&c, m->offset);
	put64(&c, m->len);
	return enc_end(&c);
}

int rmig_page_req_decode(const uint8_t *buf, size_t len, struct rmig_msg_page_req *m)
{
	struct cur c = DEC(buf, len);

	m->block = get32(&c);
	m->offset = get64(&c);
	m->len = get64(&c);
	return dec_end(&c);
}

int rmig_complete_encode(const struct rmig_msg_complete *m, uint8_t *buf, size_t cap)
{
	struct cur c = ENC(buf, cap);

	put32(&c, m->flags);
	put32(&c, m->nblocks);
	put32(&c, m->nblobs);
	if (m->flags & RMIG_F_VERIFY) {
		for (uint32_t i = 0; i < m->nblocks; i++)
			putbytes(&c, m->block_digest[i], RMIG_DIGEST_LEN);
		for (uint32_t i = 0; i < m->nblobs; i++)
			putbytes(&c, m->blob_digest[i], RMIG_DIGEST_LEN);
	}
	return enc_end(&c);
}

int rmig_complete_decode(const uint8_t *buf, size_t len, struct rmig_msg_complete *m,
			 uint32_t max_blocks, uint32_t max_blobs)
{
	struct cur c = DEC(buf, len);

	m->flags = get32(&c);
	m->nblocks = get32(&c);
	m->nblobs = get32(&c);
	if (c.bad || m->nblocks > max_blocks || m->nblobs > max_blobs ||
	    (m->flags & ~RMIG_F_VERIFY))
		return -EBADMSG;
	if (m->flags & RMIG_F_VERIFY) {
		for (uint32_t i = 0; i < m->nblocks; i++)
			getbytes(&c, m->block_digest[i], RMIG_DIGEST_LEN);
		for (uint32_t i = 0; i < m->nblobs; i++)
			getbytes(&c, m->blob_digest[i], RMIG_DIGEST_LEN);
	}
	return dec_end(&c);
}

int rmig_rails_encode(const struct rmig_msg_rails *m, uint8_t *buf, size_t cap)
{
	struct cur c = ENC(buf, cap);

	if (!m->n || m->n > RMIG_RAILS_MAX - 1)
		return -EINVAL;
	put32(&c, m->n);
	for (uint32_t i = 0; i < m->n; i++) {
		const struct rmig_wire_rail *r = &m->r[i];

		if (r->ep_len > RMIG_EP_MAX)
			return -EINVAL;
		put16(&c, r->family);
		put16(&c, r->ep_len);
		putbytes(&c, r->addr, sizeof(r->addr));
		putbytes(&c, r->ep, r->ep_len);
	}
	return enc_end(&c);
}

/* A unicast address a data channel can be opened to. */
static bool rail_addr_ok(const struct rmig_wire_rail *r)
{
	static const uint8_t zero[16];

	if (r->family == 4) {
		if (memcmp(r->addr + 4, zero, 12))
			return false;
		/* 0.0.0.0/8, multicast and reserved (224/3), broadcast */
		return r->addr[0] != 0 && r->addr[0] < 224;
	}
	if (r->family == 6)
		return memcmp(r->addr, zero, 16) && r->addr[0] != 0xff;
	return false;
}

int rmig_rails_decode(const uint8_t *buf, size_t len, struct rmig_msg_rails *m)
{
	struct cur c = DEC(buf, len);

	m->n = get32(&c);
	if (c.bad || !m->n || m->n > RMIG_RAILS_MAX - 1)
		return -EBADMSG;
	for (uint32_t i = 0; i < m->n; i++) {
		struct rmig_wire_rail *r = &m->r[i];
		uint16_t fam = get16(&c);

		r->ep_len = get16(&c);
		if (c.bad || fam > 255 || r->ep_len > RMIG_EP_MAX)
			return -EBADMSG;
		r->family = (uint8_t)fam;
		getbytes(&c, r->addr, sizeof(r->addr));
		getbytes(&c, r->ep, r->ep_len);
		if (c.bad || !rail_addr_ok(r))
			return -EBADMSG;
	}
	return dec_end(&c);
}

int rmig_reg_encode(const struct rmig_msg_reg *m, uint8_t *buf, size_t cap)
{
	struct cur c = ENC(buf, cap);

	if (m->desc_len > RMIG_DESC_MAX)
		return -EINVAL;
	put32(&c, m->block);
	put16(&c, m->desc_len);
	putbytes(&c, m->desc, m->desc_len);
	return enc_end(&c);
}

int rmig_reg_decode(const uint8_t *buf, size_t len, struct rmig_msg_reg *m)
{
	struct cur c = DEC(buf, len);

	m->block = get32(&c);
	m->desc_len = get16(&c);
	if (c.bad || m->desc_len > RMIG_DESC_MAX)
		return -EBADMSG;
	getbytes(&c, m->desc, m->desc_len);
	return dec_end(&c);
}

int rmig_auth_encode(const struct rmig_msg_auth *m, uint8_t *buf, size_t cap)
{
	if (cap < sizeof(m->nonce) + sizeof(m->mac))
		return -ENOSPC;
	memcpy(buf, m->nonce, sizeof(m->nonce));
	memcpy(buf + sizeof(m->nonce), m->mac, sizeof(m->mac));
	return (int)(sizeof(m->nonce) + sizeof(m->mac));
}

int rmig_auth_decode(const uint8_t *buf, size_t len, struct rmig_msg_auth *m)
{
	if (len != sizeof(m->nonce) + sizeof(m->mac))
		return -EBADMSG;
	memcpy(m->nonce, buf, sizeof(m->nonce));
	memcpy(m->mac, buf + sizeof(m->nonce), sizeof(m->mac));
	return 0;
}

void rmig_frame_encode(const struct rmig_frame *f, uint8_t *buf)
{
	rmig_put_be32(buf, RMIG_DATA_MAGIC);
	buf[4] = f->type;
	buf[5] = f->flags;
	rmig_put_be16(buf + 6, 0);
	rmig_put_be32(buf + 8, f->id);
	rmig_put_be32(buf + 12, f->len);
	rmig_put_be64(buf + 16, f->offset);
	rmig_put_be64(buf + 24, f->arg);
}

int rmig_frame_decode(const uint8_t *buf, struct rmig_frame *f)
{
	if (rmig_get_be32(buf) != RMIG_DATA_MAGIC)
		return -EBADMSG;
	f->type = buf[4];
	f->flags = buf[5];
	f->id = rmig_get_be32(buf + 8);
	f->len = rmig_get_be32(buf + 12);
	f->offset = rmig_get_be64(buf + 16);
	f->arg = rmig_get_be64(buf + 24);
	if (f->type == 0 || f->type >= RMIG_FRAME_TYPE_MAX || f->flags != 0 ||
	    rmig_get_be16(buf + 6) != 0)
		return -EBADMSG;
	return 0;
}
