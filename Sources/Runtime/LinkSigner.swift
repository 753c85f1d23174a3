import Channels
import Postgres
import Synchronization

/// The installation's `SignedLinks`, made once per process: signed with NURTURE_SECRET, or (without it, with a
/// warning at start) the installation's own key from PostgreSQL.
final class LinkSigner: Sendable {
    private let config: NurtureConfig
    private let made = Mutex<SignedLinks?>(nil)

    init(config: NurtureConfig) {
        self.config = config
    }

    func links(on db: PostgresConnection) throws -> SignedLinks {
        if let known = made.withLock({ $0 }) { return known }
        var secret = config.secret
        if secret == nil {
            secret = try db.query("SELECT secret FROM installation_secret WHERE id = 1").rows.first?[0].string
        }
        let links = SignedLinks(publicURL: config.publicURL, secret: secret ?? "")
        made.withLock { $0 = links }
        return links
    }
}
