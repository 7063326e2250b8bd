// SPDX-License-Identifier: Apache-2.0

/// Keys made for these tests with `openssl genpkey` (OpenSSL 3.0); they protect nothing.
enum TestKeys {
    static let rsaPrivate = """
        -----BEGIN PRIVATE KEY-----
        MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDRXlV4XUisXUdj
        yp/MeXIn/fEGshA0I9PxkHKYB4/zG1tHHSc5B7WBy2h9LQUUS4BgB52tyQ72j+Tf
        F03HusSxkxaYYKbUvSmjE49mX/w05MbqJXSngdbflw8kSAmVB9hlfa+Z9jt2aehU
        EBYZh4ENJL2heut2YeCeNY5fdVtOBylPrviAe/u40MQTJRgp3QCFCZydV4MIOlwg
        VWVhWp44pt5NyjKnjedV7TGkN5e2IBNM4SmhW0Yr4ricU5kccDevrjiyjU/88jbT
        0NP8QpWw+GdGP5PyyCX57XzuTKoNxux8YRc4bBUJ36FWpkpg9btONnWL3Y2/y5mp
        CYIebKGXAgMBAAECggEACN+IHMlLTq7HW0XXnulYurQq9l8ui58nGNpH2QSdB68V
        n75vDp4yhZUy0PdK+1C12JwKBTb7sNxpVUEeFURnmKUEtKGIAIUh0hz+m1afEDjP
        61V6C61Xh3NV+3IoIc5K0AZTHmHOpFaZt5JU9XEGOaHgfYsBlqtQQzQ+2/HT1Esq
        xABjNoSFcszEaHuHTUJ6+n6gPHawXO0xyxfQRvqMPwer1IocBkR3QgNO618nz9wr
        SmvDEniYR6b40lxEgSy2CXiwFGtnV/FJTsNLEwlJRJ1WUkOKi9JFERsE8D/Tak5g
        yh8DIvhyJT04CMI1W3DMnDsohJ/4DM45ZepuOnDO5QKBgQDwzYUkzSDDxvomBAT1
        MdtWYVmzWpCTY5y1fDR6iJevXCdwAXWNgX3OWnNO/qCNGsBTmTuoTa9oiWdKa2ii
        3Go56iNw8mEp0CG77m+b60L04S0plLoeDtZIGrMm7i5nTHZJ8Vxpec4vSiXQ/Xoc
        Vy1K8DMGFF73dgveXug7TiWk0wKBgQDelPOoY8ruRZmspRc3T8WMXv0JGNjVOdUd
        1ePeAh2PjRoC8pwGNtasgEkuHej2gzo42ZG8Sy0n8kcI3dGshSFkYp+yrhvbZNde
        pEC+jpeKhBE0DW08zeMhQlkSADtqyl3aNpwK+bCNEKm0g+qu1LmkHhG+qP2UgvX0
        VFSaAhdlrQKBgE2a3psCpNmTidCwoOxomfiXvTHpMQjfJIT0t3D6DnCMcYVOYxUs
        s1/KlLjTpOh0w6DtlGVkS/CTv78jKIC8Klvp0mw3IQs5sXWAnWWRh22mGEj7TpQb
        UgHA4RXd0wSlhsXDzHWNtN5WtiNJXY4+pjEtgjQmYoi7+Y075vod8FHTAoGANMqv
        X+kLYKgxYrllYEETYc/FxDqYczpcSc9JVIa77ChTWw+f4flvwUpMERwW/SDy1jkE
        T9ykwSy9nGTALmMFIIIjzoVtJgQs8M2UbZ30Y24fhnEIz7sle+X4qkRT02hcCj2Z
        lSDTtyGUnrQLHZxmy342RzpdqrPFEkZOKpkEY6ECgYBzAco2vaZwO95iMYm0g7pS
        Y3ocEUjKZicfTZ7pSzZMv2uBmfpnOoMVIe7zcPaiH01tqo8sM+7sksCGKuZXYxYK
        golKDTaOMxx10xSWGgZwujf787EaT3F1SnIeArE4q1lzizdpqjAyAYAxTz2G1jF6
        xrliN8dPuJG7YlnipnHmIQ==
        -----END PRIVATE KEY-----
        """

    static let rsaPublic = """
        -----BEGIN PUBLIC KEY-----
        MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0V5VeF1IrF1HY8qfzHly
        J/3xBrIQNCPT8ZBymAeP8xtbRx0nOQe1gctofS0FFEuAYAedrckO9o/k3xdNx7rE
        sZMWmGCm1L0poxOPZl/8NOTG6iV0p4HW35cPJEgJlQfYZX2vmfY7dmnoVBAWGYeB
        DSS9oXrrdmHgnjWOX3VbTgcpT674gHv7uNDEEyUYKd0AhQmcnVeDCDpcIFVlYVqe
        OKbeTcoyp43nVe0xpDeXtiATTOEpoVtGK+K4nFOZHHA3r644so1P/PI209DT/EKV
        sPhnRj+T8sgl+e187kyqDcbsfGEXOGwVCd+hVqZKYPW7TjZ1i92Nv8uZqQmCHmyh
        lwIDAQAB
        -----END PUBLIC KEY-----
        """

    static let p256Private = """
        -----BEGIN PRIVATE KEY-----
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgetesqg7of5E4MQyp
        xXfL68Md83bcawhIJJCWTlZ06X+hRANCAATJ43p9qA+yMTOzKWgMpUMCfmoGFCuJ
        rx18LyXPzXnZGKoO5+pDfjIzbE2J1bjyLzTwU5xusMAmYupZktpXgWmT
        -----END PRIVATE KEY-----
        """

    static let p256Public = """
        -----BEGIN PUBLIC KEY-----
        MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEyeN6fagPsjEzsyloDKVDAn5qBhQr
        ia8dfC8lz8152RiqDufqQ34yM2xNidW48i808FOcbrDAJmLqWZLaV4Fpkw==
        -----END PUBLIC KEY-----
        """

    static let ed25519Private = """
        -----BEGIN PRIVATE KEY-----
        MC4CAQAwBQYDK2VwBCIEIKvNs+GOB/hQU1f2/sJYCpNloLAAnzI5onM9hTtkKZx/
        -----END PRIVATE KEY-----
        """

    static let x25519Public = """
        -----BEGIN PUBLIC KEY-----
        MCowBQYDK2VuAyEAOHwf4tJS7DMzuJEoOdw7MYuZKElwKSur4IPQBuXP6lI=
        -----END PUBLIC KEY-----
        """

    static let secp256k1Public = """
        -----BEGIN PUBLIC KEY-----
        MFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAE74d7mBhcQBe1Q5YNxUUzK3aMIM62Rm92
        rZPgHHvsEfLdYLzX3Djr6xldVaARcNlQ46cGgqCRx2sevh9iUGhpPw==
        -----END PUBLIC KEY-----
        """
}
