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

/* Parameter of CKM_HSMLINK_SM2_SM3: the signer's distinguishing identifier. */
typedef struct CK_HSMLINK_SM2_PARAMS {
    CK_BYTE_PTR pUserID;
    CK_ULONG ulUserIDLen;
} CK_HSMLINK_SM2_PARAMS;

#endif /* HSMLINK_H */
