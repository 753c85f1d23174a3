import Foundation
import Store
import Testing

/// Delivery ids are UUIDv7: canonical text, version 7, RFC 9562 variant, ordered as they are made.
@Suite struct DeliveryIDTests {
    @Test func idsAreVersion7AndSortInTheOrderTheyWereMade() {
        let ids = (0..<10_000).map { _ in DeliveryID.next() }
        #expect(Set(ids).count == ids.count)
        #expect(ids == ids.sorted(), "ids made one after another sort one after another")
        for id in ids.prefix(100) {
            #expect(UUID(uuidString: id) != nil, "\(id) is a UUID")
            #expect(id == id.lowercased())
            let chars = Array(id)
            #expect(chars[14] == "7", "version nibble of \(id)")
            #expect("89ab".contains(chars[19]), "variant of \(id)")
        }
        // The first 48 bits are the Unix time in milliseconds.
        let hex = ids[0].replacingOccurrences(of: "-", with: "").prefix(12)
        let millis = Double(UInt64(hex, radix: 16)!) / 1000
        #expect(abs(millis - Date().timeIntervalSince1970) < 60)
    }
}
