//! Fixed keys for tests only (generated once with openssl; never used outside tests): two
//! 2048-bit RSA keys and two P-256 keys, with their public JWK components.

/// Test RSA key 1: PKCS#1 DER, base64.
pub(crate) const RSA1_PKCS1: &str = concat!(
    "MIIEowIBAAKCAQEAozv3hznf9q6CVFAlpcd7PQYewcsLEkHjPsNVQOQWLej2XI6P+TIIqInhIV+IFK9rS83pvtfonQwvpLuO",
    "fuiHRkUvEzlznJp2DsedW9OhnGWifS+irnsVvYdiH5JNy80cJWcBWEHWStaUIYTryn2O2jO+RV6IY3W/88l1cTUioH2SvRK4",
    "jj6jp7APvH8PuFAeFaQgTdWNpCihE49FMz+YrQ4Ublbi8Z08pY3xpDeQ4Sko2cCIVgLEEvD6uY7/ZBPx72R5+POaPewjMwAg",
    "zEd4EZ4WB4EG0v71F1EN+g9yeueChJeKEpkt8aZyr33pha54m5+rug3OBqGvfCHXwjH0/QIDAQABAoIBAANuziqVnMBpFJwV",
    "0GjfXFfg8lIkhT/Vy2PlQzx5X38JLG8vX1dABl8XATlMs0WuF71RIAaPr1hoKnNWL227Uab4awBGP8huFigC6iwFdBtgJs3n",
    "q83sED27ZGSiFMlBr8MYmrZishFCWHyo+TV5tQChQHHghlFDJ22G0dW25prF6Kb0nz4wxXb3tVY0Ctp9U8NfM5mJejkDqfLh",
    "U+GNjohffbf4lKloQdWK396JC+W5rRpbDHWlZ4ogI1g0z7eG521RKNJKjKnTHNNcjDaTZTYLcx+jUyIAKAdIo+DFKKzwctX2",
    "8CEE++hlpeBy9YGNBHUoQik33jaCgbtSmfu59+kCgYEA4BGjfEYrJrQLNOWftZLM1mMnuJl+GqSXYdkFdzmCLunvcuBMZXIo",
    "2FGS/aUQCo3vx5ug/Et/SQLBkXL0Xx8RSOKKHmAlynGgVBVGrz+JHYS5mc88Ok6F56uUTTsHAaLgP1Q7/ku2p6D5vWn8kJdk",
    "rS2XaRiIqBi4bamdSsWohgkCgYEAun79tbMDz3hTNfZsvQCQGIcrAjK5qK30WP4HFgT9J0eA3zp+dkGSKKYh+bmb/3jG5r1I",
    "TjLwGxM3iwRblKTskMUMHHQY6Bt207fSUbfomnT+pMnOzUr6arimYyYFPy+VQhcvXkceiHkn/Y3KKrm3/CekXUoTiGVNj08K",
    "+L/O1FUCgYBU31mFoS6HInt8Nd4g8NIWAsjw63MQtHeC4KlpV6cwDfxdDwjhBDTke0GqQfOpi8nfWdvItPApv5mCdoCJ50Ks",
    "0OJwTwsBe7i3ILf9eZt+St/imtS9YTDnZ95swocM350BX+65jARLynXOgW7hdfb0gehwLpLU2UhCgZTK1cPXwQKBgHXBm6cw",
    "Cpbkzf3DxHMuuM2UA5cWul4EwMW0WHsR2VsE7h2FjLZUvtoF1GwfQ53y//xPxikCRtOBtc+Eh+L6pBjhIr2QnO1p8gTLC/Tn",
    "X+qvNt6MQpUj46yhPQZbynJUNDWP+CvaUjAv+A1Ei0OhEsgXq9Pv4xd7h5aWfUIFsq4lAoGBANOjLf2WVIW/O3lfLJ/+QsXP",
    "mZMOjdxOrgLz93xjIjOg/iQ/bZGnT8j3N/plcaroCPQCao0bBnayGigDDTwugA5Dvn3sWnp4V5C183cs+aeyL525BwSLl5l1",
    "U8CU3VxosVvyr2P3EdExOPFYIGcHjlrVok1+yBggDluWcHn9sDJg",
);

/// Test RSA key 1: modulus, base64url.
pub(crate) const RSA1_N: &str = concat!(
    "ozv3hznf9q6CVFAlpcd7PQYewcsLEkHjPsNVQOQWLej2XI6P-TIIqInhIV-",
    "IFK9rS83pvtfonQwvpLuOfuiHRkUvEzlznJp2DsedW9OhnGWifS-irnsVvYdiH5JNy80cJWcBWEHWStaUIYTryn2O2jO-",
    "RV6IY3W_88l1cTUioH2SvRK4jj6jp7APvH8PuFAeFaQgTdWNpCihE49FMz-YrQ4Ublbi8Z08pY3xpDeQ4Sko2cCIVgLEEvD6",
    "uY7_ZBPx72R5-POaPewjMwAgzEd4EZ4WB4EG0v71F1EN-g9yeueChJeKEpkt8aZyr33pha54m5-rug3OBqGvfCHXwjH0_Q",
);

/// Test P-256 key 1: PKCS#8 DER, base64.
pub(crate) const EC1_PKCS8: &str = concat!(
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgyCQN0dYwbposVYQb2YgfOBVsHsdTHp68LvPRwgQHP7GhRANC",
    "AASdmTFUZ3koydqQpiSu2lZ0dCV9k1Uj9jh2kBA40mGb3+atOgdnn6RMqx0X6zQQE0WA1zxi3CEtskJ/rqEPVkFy",
);

/// Test P-256 key 1: public point, base64url.
pub(crate) const EC1_X: &str = "nZkxVGd5KMnakKYkrtpWdHQlfZNVI_Y4dpAQONJhm98";
pub(crate) const EC1_Y: &str = "5q06B2efpEyrHRfrNBATRYDXPGLcIS2yQn-uoQ9WQXI";

/// Test RSA key 2: PKCS#1 DER, base64.
pub(crate) const RSA2_PKCS1: &str = concat!(
    "MIIEowIBAAKCAQEAmBjDd1S2Nzvmc9/EM/gZp0FCK3U4bsZs6gB5AxCH3pt/whv9/JxIFg8XoPjocZDYhiM7bL+wMeGQl2Oj",
    "DH/AQNYD/lDlXur3dx4mKN36TvTwjXGhdhuqlwBngP5wxmopCMuXD/LM5ylesO2oMKFQVucyIAqbVjQ3RMeJEcqiJphhZiTH",
    "iiqLeZbIRZmmfGZFYZ6KKns6zja4K6jOIqWdExlUXyXOjOKYWCDGnyoWjOmSGH50hNFJRCL/iMqq6j0m1ar9LTrroa73XJA8",
    "5+eepREuGBuHlrshbLy+ZhG7JIwkD/RCffqV2qywCPkumsk44T4avfTE05GLC1W+p0umYwIDAQABAoIBAAmW5hwL90EcQbdk",
    "kFZGejeVYbqjtV8mm49VYEvVKvvaCgAPC8B1igX6BZ9ckis22q/6YLDGlTFP63HgElOjalesJqxOJWgKoHeeKwHAnRuFTfVd",
    "CLUNoX/LwrrbT/jykIvBalDTGiAo95NoKIaIZSxVf0+N26VfvWxUuEuq3vZX5DjLzOmy1HFRNMhTd9BFdPJFEb0KA9ToT/8n",
    "XHt2mmnr1fh/od1WiVbc0P1Obbbaudi3TrQs4sEkgTzHK01ZYlC1K1wVtNcdzqW/JIuDyLyvlS32IkSRpZqk34c/Pc7KxJDP",
    "6EfVIxasNPZuSeTvqmqaPesv03TmiKY7qAfpzmECgYEA1IPsT/n0CNmfYN2N3uaxV5cebWql5WLRD1UUFCFpwhMFwAJc74+m",
    "rYrTSCSpziq/zv7h3mTe0lsUyDhx35xyTlg5oKwi7hynlduxxMqDMqwiPJ0+WUcqUeC23ZSColoOKjcL48eHSNuQpebTH9/+",
    "zCGizRmPkZbALNS9g0HlbWUCgYEAtzf3LxtBxwO8ikEfWVH5ASNX9vMl0mN1N15tWG+SOqCGk1m2I1PyZWMZ9M5NC1b73yNz",
    "+sXD8LaLttzWL+Mvut6e9NZHRFiBMzA3S5cNa7IJWDr37nQAMil79GOaLvgOP4LiWsN/Q1ffl/jPDUpuRnGAgZijvDzxPbN6",
    "WmaGTCcCgYEAmOy1yHddnGC9x76msJfhVd5xDtuHtaF+P0JByJqit/1oTdtldR4yGv+jOm7nomwwyouvjZGYplbUhZ/YkcjK",
    "mIX0MiKsoBwOnFAThEEWWAh2OpgMncIQOgsyjBCqUJntR4OFEswqFcuqMzf/BRjzCYHK3Txfi6ynbZtJJILuzeECgYAxZubA",
    "jeHrjodc4/hW9jJk6ynBzYgKNYUam9xx9wt/wV7oBk2FMxJt4g3So3nEr/yUCxQvrvmJQz9i3CLooKJzCankrI5k0FRt//c4",
    "647T1hqM7sGBS0fuPp9MozqkpX/6AgmUnZgICX6hlJYHqGUZm2siBo1HqUsG7wjzrSdTCwKBgFSk1j3FQ6B3Fgd8KZpwYz3r",
    "zR1baWqywzTdl3h8AT6R9OtTP/7bqmPDtFyzprAt9BiYxD8xUuD4rqQllJstjLH1vr5zBG2kbdpEfVnYCaxPicFu2x0s65yw",
    "ES3VxKSam3foppdWy8yX/hodJ5TtY5YLR+/j7Fowl78RCWQu+2Mf",
);

/// Test RSA key 2: modulus, base64url.
pub(crate) const RSA2_N: &str = concat!(
    "mBjDd1S2Nzvmc9_EM_gZp0FCK3U4bsZs6gB5AxCH3pt_whv9_JxIFg8XoPjocZDYhiM7bL-wMeGQl2OjDH_AQNYD_lDlXur3",
    "dx4mKN36TvTwjXGhdhuqlwBngP5wxmopCMuXD_LM5ylesO2oMKFQVucyIAqbVjQ3RMeJEcqiJphhZiTHiiqLeZbIRZmmfGZF",
    "YZ6KKns6zja4K6jOIqWdExlUXyXOjOKYWCDGnyoWjOmSGH50hNFJRCL_iMqq6j0m1ar9LTrroa73XJA85-",
    "eepREuGBuHlrshbLy-ZhG7JIwkD_RCffqV2qywCPkumsk44T4avfTE05GLC1W-p0umYw",
);

/// Test P-256 key 2: PKCS#8 DER, base64.
pub(crate) const EC2_PKCS8: &str = concat!(
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg3URK/dM6siPmV+aJ/mR9RkNhZG0LR813Q9z57VssZ+2hRANC",
    "AAQc4fV6CYi7IgHXe2/J5fCwraYnSL6jZsRAp8CL2cyKIsx+Rd0F0N54zwo6x1lNRXaQwN+y3hiEaK0AnuAuqHfO",
);

/// Test P-256 key 2: public point, base64url.
pub(crate) const EC2_X: &str = "HOH1egmIuyIB13tvyeXwsK2mJ0i-o2bEQKfAi9nMiiI";
pub(crate) const EC2_Y: &str = "zH5F3QXQ3njPCjrHWU1FdpDA37LeGIRorQCe4C6od84";
