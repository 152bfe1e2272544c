/*
 * hsmlink.h - hsmlink vendor-defined PKCS#11 constants.
 *
 * Include after pkcs11.h. PKCS#11 has no standard numbers for the GM/T
 * algorithms (SM2, SM3, SM4); these are hsmlink's, in the vendor range.
 * Values never change; new ones are appended. Mirrors protocol/src/vendor.rs.
 */
#ifndef HSMLINK_H
#define HSMLINK_H

#define CKK_HSMLINK_SM2 0xC8530001UL
#define CKK_HSMLINK_SM4 0xC8530002UL
#define CKM_HSMLINK_SM2_KEY_PAIR_GEN 0xC8530100UL
#define CKM_HSMLINK_SM2 0xC8530101UL
#define CKM_HSMLINK_SM2_SM3 0xC8530102UL
#define CKM_HSMLINK_SM2_ENCRYPT 0xC8530103UL
#define CKM_HSMLINK_SM2_KEY_EXCHANGE 0xC8530104UL
#define CKM_HSMLINK_SM3 0xC8530110UL
#define CKM_HSMLINK_SM3_HMAC 0xC8530111UL
#define CKM_HSMLINK_SM4_KEY_GEN 0xC8530120UL
#define CKM_HSMLINK_SM4_ECB 0xC8530121UL
#define CKM_HSMLINK_SM4_CBC 0xC8530122UL
#define CKM_HSMLINK_SM4_CBC_PAD 0xC8530123UL
#define CKM_HSMLINK_SM4_CTR 0xC8530124UL
#define CKM_HSMLINK_SM4_GCM 0xC8530125UL
#define CKM_HSMLINK_SM4_CMAC 0xC8530126UL

/*
 * ANSI X9.143 / ISO 20038 ("TR-31") key block, for C_WrapKey and
 * C_UnwrapKey; no parameter. The wrapping/unwrapping key is the key block
 * protection key: AES (version D) or TDES, CKK_DES2/CKK_DES3 (versions B
 * and C on import, B on export; version A is refused). The wrapped key is
 * the ASCII key block. The block's header is kept on the imported key
 * (read-only):
 */
#define CKM_HSMLINK_TR31 0xC8530200UL
/*
 * TR-34 (ASC X9 TR 34-2019) key token import, with C_UnwrapKey. The
 * unwrapping key is the partition's key-receiving key (an RSA private key,
 * 2048 bits or more, with CKA_UNWRAP); the wrapped key is the key token
 * (DER CMS SignedData of EnvelopedData). The key distribution host's
 * certificate must be a certificate object with CKA_TRUSTED, or be carried
 * in the token or stored as a certificate object and issued by one. The
 * parameter is the random nonce the receiver sent (two-pass), or
 * NULL_PTR/0 for a one-pass token (signed within the last hour).
 */
#define CKM_HSMLINK_TR34 0xC8530201UL
#define CKA_HSMLINK_KEYBLOCK_HEADER 0xC8530300UL
#define CKA_HSMLINK_KEY_VERSION 0xC8530301UL

/*
 * Key states after NIST SP 800-57 part 1, section 5.3 (every partition; behind
 * the pkcs11 driver hsmlink keeps the state, which the vendor module does not
 * know, and a destroyed key's device object is destroyed).
 * CKA_HSMLINK_KEY_STATE is a CK_ULONG on every key object, CKS_HSMLINK_ACTIVE
 * unless the creating template asks for CKS_HSMLINK_PRE_ACTIVATION (no other
 * value at creation). C_SetAttributeValue moves it forward only:
 *   PRE_ACTIVATION -> ACTIVE, PRE_ACTIVATION or ACTIVE -> DEACTIVATED,
 *   any but DESTROYED -> COMPROMISED, DEACTIVATED or COMPROMISED -> DESTROYED;
 * another move is CKR_ATTRIBUTE_VALUE_INVALID, any change of a DESTROYED
 * key CKR_ATTRIBUTE_READ_ONLY. The user moves the keys they see; the SO may
 * only mark a (public) key COMPROMISED. Every use is checked:
 *   PRE_ACTIVATION  no use                               CKR_KEY_FUNCTION_NOT_PERMITTED
 *   ACTIVE          what the usage attributes allow
 *   DEACTIVATED     decrypt, verify, verify-recover, unwrap only; never
 *   COMPROMISED     wrapped out (C_WrapKey: CKR_KEY_NOT_WRAPPABLE)
 *   DESTROYED       no use; the key material (CKA_VALUE, private components)
 *                   is wiped, the object and its other attributes stay
 */
#define CKA_HSMLINK_KEY_STATE 0xC8530302UL
#define CKS_HSMLINK_PRE_ACTIVATION 0UL
#define CKS_HSMLINK_ACTIVE 1UL
#define CKS_HSMLINK_DEACTIVATED 2UL
#define CKS_HSMLINK_COMPROMISED 3UL
#define CKS_HSMLINK_DESTROYED 4UL

/* Parameter of CKM_HSMLINK_SM2_SM3: the signer's distinguishing identifier. */
typedef struct CK_HSMLINK_SM2_PARAMS {
    CK_BYTE_PTR pUserID;
    CK_ULONG ulUserIDLen;
} CK_HSMLINK_SM2_PARAMS;

/*
 * Parameter of CKM_HSMLINK_SM2_KEY_EXCHANGE (GM/T 0003.3 key exchange, no
 * confirmation hashes), used with C_DeriveKey whose base key is the caller's
 * static SM2 private key. hEphemeralKey is the caller's ephemeral SM2
 * private key (made with CKM_HSMLINK_SM2_KEY_PAIR_GEN; its public point goes
 * to the peer). The peer's keys are uncompressed points 04||x||y. A NULL id
 * of length 0 means the default id "1234567812345678". The derived key's
 * length is CKA_VALUE_LEN (or the key type's, e.g. 16 for SM4).
 */
typedef struct CK_HSMLINK_SM2_KEY_EXCHANGE_PARAMS {
    CK_BBOOL isInitiator;
    CK_OBJECT_HANDLE hEphemeralKey;
    CK_BYTE_PTR pPeerPublicKey;
    CK_ULONG ulPeerPublicKeyLen;
    CK_BYTE_PTR pPeerEphemeralKey;
    CK_ULONG ulPeerEphemeralKeyLen;
    CK_BYTE_PTR pUserID;
    CK_ULONG ulUserIDLen;
    CK_BYTE_PTR pPeerUserID;
    CK_ULONG ulPeerUserIDLen;
} CK_HSMLINK_SM2_KEY_EXCHANGE_PARAMS;

#endif /* HSMLINK_H */
